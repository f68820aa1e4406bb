"""Unit tests of the embedding stage: config, batching, rate limits, retries, cache, store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.stages import REPO
from pydantic import ValidationError

from components.embedding.batching import make_batches, plan_units, text_key
from components.embedding.cache import CacheCorruptError, EmbeddingCache, Namespace, keys_array
from components.embedding.config import EmbeddingConfig, redact_url
from components.embedding.errors import EmbeddingError, PermanentError, TransientError, redact
from components.embedding.extract import plan_shards
from components.embedding.ratelimit import RateLimiter
from components.embedding.retry import RetryPolicy, call_with_retries, parse_retry_after
from components.embedding.store import EmbeddingStoreError, load_embeddings, save_embeddings


# --- config -----------------------------------------------------------------------------------
def test_params_yaml_section_validates_with_local_default() -> None:
    from components.params import load_params

    config = load_params(REPO / "params.yaml").embedding
    assert config.provider == "local" and config.model is None
    assert config.normalize is True
    assert "embedding" in yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"provider": "openai"}, "embedding.model is required for provider 'openai'"),
        (
            {"provider": "google", "model": "m", "batch_size": 101},
            "exceeds the google limit of 100",
        ),
        (
            {"provider": "openai", "model": "m", "api_key_env": "sk-abcdefghijklmnop"},
            "must be the NAME of an environment variable",
        ),
        ({"provider": "local", "api_key_env": "OPENAI_API_KEY"}, "needs no key"),
        (
            {"provider": "openai", "model": "m", "base_url": "localhost:8000"},
            "must start with http:// or https://",
        ),
        (
            {
                "provider": "openai",
                "model": "m",
                "max_batch_tokens": 5000,
                "tokens_per_minute": 100,
            },
            "exceeds tokens_per_minute",
        ),
        ({"unknown_field": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_values_with_actionable_messages(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EmbeddingConfig(**values)


def test_config_is_frozen_and_public_dict_drops_url_credentials() -> None:
    config = EmbeddingConfig(
        provider="openai", model="m", base_url="https://user:pw@host:8443/v1?key=abc"
    )
    with pytest.raises(ValidationError):
        config.batch_size = 3  # type: ignore[misc]
    assert config.public_dict()["base_url"] == "https://host:8443/v1"
    assert redact_url(None) is None
    assert config.effective_max_input_tokens() == 8191
    assert config.effective_max_batch_tokens() == 300_000


def test_redact_scrubs_env_secrets_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "canary-value-123456")
    text = redact("got canary-value-123456 and Bearer abc.def and sk-live1234567890")
    assert "canary" not in text and "abc.def" not in text and "sk-live" not in text


# --- batching ---------------------------------------------------------------------------------
def test_plan_units_truncates_or_splits_and_never_drops() -> None:
    long_text = " ".join(f"w{i}" for i in range(300))  # ~1190 chars
    estimate = len  # 1 token per char for the test
    truncated = plan_units(
        ["short", long_text], max_tokens=100, overlong="truncate", estimate=estimate
    )
    assert truncated.truncated == 1 and len(truncated.units) == 2
    assert len(truncated.units[1]) <= 100 and long_text.startswith(truncated.units[1])
    split = plan_units(["short", long_text], max_tokens=100, overlong="split", estimate=estimate)
    assert split.split == 1 and len(split.owners[1]) > 1
    assert all(len(split.units[u]) <= 100 for u, _ in split.owners[1])
    assert pytest.approx(sum(w for _, w in split.owners[1])) == 1.0
    rebuilt = " ".join(split.units[u] for u, _ in split.owners[1])
    assert rebuilt.split() == long_text.split()  # every word kept


def test_make_batches_respects_items_and_tokens() -> None:
    batches = make_batches([10, 10, 10, 50, 5, 5], max_items=2, max_tokens=40)
    assert batches == [[0, 1], [2], [3], [4, 5]]
    assert sum(len(b) for b in batches) == 6


def test_plan_shards_cover_positions_exactly_once() -> None:
    shards = plan_shards(25, EmbeddingConfig(shard_size=10), kind="query")
    assert [(s.start, s.stop) for s in shards] == [(0, 10), (10, 20), (20, 25)]
    assert all(s.kind == "query" for s in shards) and plan_shards(0, EmbeddingConfig()) == []


# --- rate limiting and retries -----------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limiter_spaces_requests_and_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        requests_per_minute=60, tokens_per_minute=None, burst_s=1.0, clock=clock, sleep=clock.sleep
    )
    for _ in range(5):
        limiter.acquire()
    assert 3.9 <= clock.now <= 4.1  # 1/s after a burst of one
    clock2 = FakeClock()
    tokens = RateLimiter(None, tokens_per_minute=600, burst_s=1.0, clock=clock2, sleep=clock2.sleep)
    for _ in range(3):
        tokens.acquire(tokens=20)  # 10 tokens/s, each request costs 2 s
    assert 3.5 <= clock2.now <= 4.5
    tokens.pause(5.0)
    before = clock2.now
    tokens.acquire(tokens=0)
    assert clock2.now - before >= 5.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_backoff_is_exponential_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=5, initial_s=1.0, max_s=8.0)
    delays = [policy.backoff(a) for a in range(6)]
    assert all(0.5 * min(8, 2**a) <= d <= min(8, 2**a) for a, d in enumerate(delays))
    assert policy.backoff(0, retry_after=5.0) >= 5.0


def test_call_with_retries_transient_then_success_and_permanent_stops() -> None:
    calls = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503", retry_after=0.25)
        return "ok"

    policy = RetryPolicy(max_retries=3, initial_s=0.01, max_s=0.02)
    assert call_with_retries(flaky, policy, provider="p", batch="b", sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2 and all(s >= 0.25 for s in sleeps)

    def denied() -> None:
        raise PermanentError("HTTP 401")

    with pytest.raises(EmbeddingError, match=r"p provider: batch 7 failed after 1 attempt"):
        call_with_retries(denied, policy, provider="p", batch="batch 7", sleep=sleeps.append)

    def always() -> None:
        raise TransientError("HTTP 500")

    with pytest.raises(EmbeddingError, match="after 4 attempt.*HTTP 500") as info:
        call_with_retries(always, policy, provider="p", batch="b", sleep=lambda s: None)
    assert info.value.attempts == 4


# --- cache ------------------------------------------------------------------------------------
NS = Namespace(provider="openai", model="m", dimensions=4, normalize=True, task=None)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_cache_put_get_contains_and_namespaces(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, NS)
    keys = [text_key(f"t{i}") for i in range(5)]
    vecs = _vectors(5)
    cache.put(keys[:3], vecs[:3])
    assert cache.contains(keys).tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(cache.get([keys[2], keys[0]]), vecs[[2, 0]])
    with pytest.raises(KeyError, match="2 of 5 texts are not in the cache"):
        cache.get(keys)
    # a new instance (another process) sees the files; another namespace does not
    assert EmbeddingCache(tmp_path, NS).contains(keys[:3]).all()
    other = Namespace(provider="openai", model="m", dimensions=8, normalize=True, task=None)
    assert not EmbeddingCache(tmp_path, other).contains(keys[:3]).any()
    meta = json.loads((cache.dir / "namespace.json").read_text())
    assert meta["model"] == "m" and meta["dimensions"] == 4
    assert not list(cache.dir.glob(".tmp-*"))


def test_cache_compaction_keeps_every_vector(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, NS)
    keys = [text_key(f"t{i}") for i in range(20)]
    vecs = _vectors(20)
    for start in range(0, 20, 4):
        cache.put(keys[start : start + 4], vecs[start : start + 4])
    cache.put(keys[:4], vecs[:4])  # duplicate batch: same content-addressed file
    assert cache.segment_count() == 5
    pack = cache.compact(min_segments=2)
    assert pack is not None and pack.name.startswith("pack-")
    assert cache.segment_count() == 0 and len(list(cache.dir.glob("*.npz"))) == 1
    np.testing.assert_array_equal(cache.get(keys), vecs)
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, NS).get(keys[::-1]), vecs[::-1])


def test_cache_rejects_dimension_change_and_reports_corrupt_files(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, NS)
    cache.put([text_key("a")], _vectors(1))
    with pytest.raises(ValueError, match="dimension 3"):
        cache.put([text_key("b")], np.ones((1, 3), np.float32))
    (cache.dir / "seg-broken.npz").write_bytes(b"not a zip")
    with pytest.raises(CacheCorruptError, match="seg-broken.npz: unreadable cache file"):
        EmbeddingCache(tmp_path, NS)


_WRITER = """
import sys
import numpy as np
from components.embedding.batching import text_key
from components.embedding.cache import EmbeddingCache, Namespace
root, start = sys.argv[1], int(sys.argv[2])
ns = Namespace(provider="openai", model="m", dimensions=4, normalize=True, task=None)
cache = EmbeddingCache(root, ns)
for i in range(start, start + 25):
    cache.put([text_key(f"p{i}")], np.full((1, 4), i, np.float32))
"""


def test_cache_shared_by_concurrent_processes(tmp_path: Path) -> None:
    # Fresh interpreters, not forks of pytest: a fork inherits the test session's threads
    # and handlers, which is not how two runs share a cache.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(start)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 25)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    cache = EmbeddingCache(tmp_path, NS)
    got = cache.get(keys_array([text_key(f"p{i}") for i in range(50)]))
    np.testing.assert_array_equal(got[:, 0], np.arange(50, dtype=np.float32))


# --- store ------------------------------------------------------------------------------------
def test_store_round_trip_and_validation(tmp_path: Path) -> None:
    corpus, queries = _vectors(3), _vectors(2, seed=1)
    out = tmp_path / "emb"
    save_embeddings(
        out,
        corpus_ids=["a", "b", "c"],
        corpus=corpus,
        query_ids=["q1", "q2"],
        queries=queries,
        meta={"provider": "local", "model": "m"},
    )
    loaded = load_embeddings(out)
    np.testing.assert_array_equal(loaded.corpus, corpus)
    assert loaded.query_ids == ["q1", "q2"] and loaded.meta["n_corpus"] == 3
    assert loaded.meta["dimensions"] == 4 and "created_at" in loaded.meta
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["corpus.npy", "queries.npy", "corpus_ids.json", "queries_ids.json", "meta.json"]
    )
    ids, matrix, _, _, meta = loaded.as_tuple()
    assert ids == ["a", "b", "c"] and matrix.dtype == np.float32 and meta["model"] == "m"

    with pytest.raises(EmbeddingStoreError, match="corpus.npy: 3 rows but 2 corpus ids"):
        save_embeddings(
            tmp_path / "bad",
            corpus_ids=["a", "b"],
            corpus=corpus,
            query_ids=[],
            queries=np.zeros((0, 4), np.float32),
            meta={},
        )
    bad = corpus.copy()
    bad[1, 1] = np.nan
    np.save(out / "corpus.npy", bad)
    with pytest.raises(EmbeddingStoreError, match=r"corpus.npy: 1 row\(s\) contain NaN"):
        load_embeddings(out)
    (out / "meta.json").unlink()
    with pytest.raises(EmbeddingStoreError, match="meta.json: missing; .* unfinished"):
        load_embeddings(out)
