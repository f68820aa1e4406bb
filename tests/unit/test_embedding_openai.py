"""The ``openai`` provider against a real OpenAI-protocol HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers import FAULTS, OpenAITestServer, expected_matrix
from helpers.embedding_servers.helpers import DIM, fast_config, files_containing

from components.embedding import EmbeddingError, embed_texts
from components.embedding.providers import close_providers

KEY = "test-key-openai-0001"
TEXTS = [f"text number {i}" for i in range(40)]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", KEY)
    with OpenAITestServer(api_key=KEY, stall_s=5.0, retry_after=0.05) as srv:
        yield srv
    close_providers()


def test_vectors_match_and_order_is_restored(server: OpenAITestServer, tmp_path: Path) -> None:
    matrix = embed_texts(TEXTS, fast_config(server, tmp_path), kind="document")
    assert matrix.dtype == np.float32 and matrix.shape == (len(TEXTS), DIM)
    np.testing.assert_allclose(matrix, expected_matrix(TEXTS, DIM), rtol=1e-6)
    records = server.ok_requests()
    assert len(records) == 5 and all(len(r.inputs) <= 8 for r in records)
    assert {r.dimensions for r in records} == {DIM} and {r.model for r in records} == {
        "test-embedding"
    }
    assert {r.encoding_format for r in records} == {"base64"}


def test_float_encoding_and_native_dimension(server: OpenAITestServer, tmp_path: Path) -> None:
    config = fast_config(
        server, tmp_path, dimensions=None, encoding_format="float", normalize=False
    )
    matrix = embed_texts(TEXTS[:5], config)
    np.testing.assert_allclose(
        matrix, expected_matrix(TEXTS[:5], server.dim, normalize=False), rtol=1e-6
    )
    assert server.requests[0].dimensions is None and server.requests[0].encoding_format == "float"


def test_rerun_makes_no_request_and_duplicates_are_sent_once(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    config = fast_config(server, tmp_path)
    texts = TEXTS + TEXTS[:10]
    first = embed_texts(texts, config)
    assert sorted(server.all_inputs()) == sorted(TEXTS)
    server.reset_log()
    second = embed_texts(texts, config)
    assert server.requests == []
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[40:], first[:10])


def test_incremental_corpus_requests_only_new_texts(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    config = fast_config(server, tmp_path, batch_size=50)
    corpus = [f"doc {i}: some abstract text" for i in range(1000)]
    embed_texts(corpus, config)
    assert len(server.all_inputs()) == 1000
    server.reset_log()
    grown = corpus[:500] + [f"new doc {i}" for i in range(10)] + corpus[500:]
    matrix = embed_texts(grown, config)
    assert sorted(server.all_inputs()) == sorted(f"new doc {i}" for i in range(10))
    np.testing.assert_allclose(matrix, expected_matrix(grown, DIM), rtol=1e-6)


@pytest.mark.parametrize(
    "fault", ["429", "500", "stall", "truncated", "count", "dim", "nan", "disconnect"]
)
def test_transient_fault_is_survived(server: OpenAITestServer, tmp_path: Path, fault: str) -> None:
    server.add_fault(fault, times=2)
    config = fast_config(server, tmp_path, max_concurrency=1)
    matrix = embed_texts(TEXTS[:16], config)
    np.testing.assert_allclose(matrix, expected_matrix(TEXTS[:16], DIM), rtol=1e-6)
    faulted = [r for r in server.requests if r.fault == fault]
    if fault != "stall":  # a stalled answer is logged when the server gives up on it
        assert len(faulted) == 2


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("429", "rate limited (HTTP 429"),
        ("500", "server error (HTTP 500"),
        ("stall", "timed out after 0.5s"),
        ("truncated", "not valid JSON"),
        ("count", "7 vectors for 8 inputs"),
        ("dim", "dimension 15, expected 16"),
        ("nan", "NaN or infinite"),
        ("disconnect", "connection error"),
    ],
)
def test_persistent_fault_is_reported_clearly(
    server: OpenAITestServer, tmp_path: Path, fault: str, cause: str
) -> None:
    assert fault in FAULTS
    server.set_fault(fault)
    config = fast_config(server, tmp_path, max_concurrency=1, max_retries=1)
    with pytest.raises(EmbeddingError) as info:
        embed_texts(TEXTS[:8], config)
    message = str(info.value)
    assert message.startswith(
        "openai provider: shard 0 (documents 0-7), batch 1/1 (8 texts) "
        "failed after 2 attempt(s); last error:"
    )
    assert cause in message and "re-run to resume" in message
    assert info.value.provider == "openai" and info.value.attempts == 2


def test_retry_after_is_honoured(server: OpenAITestServer, tmp_path: Path) -> None:
    server.retry_after = 0.3
    server.add_fault("429")
    embed_texts(TEXTS[:4], fast_config(server, tmp_path, max_concurrency=1))
    limited, retried = server.requests[0], server.requests[1]
    assert limited.status == 429 and retried.ok
    assert retried.started - limited.finished >= 0.29


def test_finished_batches_stay_cached_when_retries_run_out(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.queue([None, None])
    server.set_fault("500")
    config = fast_config(server, tmp_path, max_concurrency=1, max_retries=2)
    with pytest.raises(EmbeddingError, match="batch 3/5"):
        embed_texts(TEXTS, config)
    done = set(server.all_inputs())
    assert len(done) == 16
    server.set_fault(None)
    server.reset_log()
    matrix = embed_texts(TEXTS, config)
    assert set(server.all_inputs()) == set(TEXTS) - done
    np.testing.assert_allclose(matrix, expected_matrix(TEXTS, DIM), rtol=1e-6)


def test_bad_key_fails_fast_without_retries(
    server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", "wrong-key-value-42")
    with pytest.raises(
        EmbeddingError, match="authentication failed .*HTTP 401.*TEST_EMBEDDING_API_KEY"
    ) as info:
        embed_texts(TEXTS[:4], fast_config(server, tmp_path))
    assert info.value.attempts == 1 and len(server.requests) == 1
    assert "wrong-key-value-42" not in str(info.value)


def test_concurrency_is_bounded(server: OpenAITestServer, tmp_path: Path) -> None:
    server.latency_s = 0.05
    embed_texts([f"c{i}" for i in range(96)], fast_config(server, tmp_path, max_concurrency=3))
    assert server.max_in_flight == 3


def test_requests_per_minute_limit_is_respected(server: OpenAITestServer, tmp_path: Path) -> None:
    # 600/min = 10/s with a 5 s burst of 50: 60 requests take at least ~1 s after the burst.
    config = fast_config(server, tmp_path, batch_size=1, max_concurrency=8, requests_per_minute=600)
    embed_texts([f"r{i}" for i in range(60)], config)
    starts = sorted(r.started for r in server.requests)
    assert starts[-1] - starts[0] >= 0.8


def test_batches_respect_token_budget_and_overlong_texts(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    long_text = " ".join(f"w{i:03d}" for i in range(400))  # 1999 bytes ~ 667 est. tokens
    texts = ["short one", long_text, "short two"]
    config = fast_config(
        server, tmp_path, max_input_tokens=100, max_batch_tokens=150, overlong="split"
    )
    matrix = embed_texts(texts, config)
    sent = server.all_inputs()
    assert long_text not in sent and all(len(s.encode()) <= 300 for s in sent)
    assert sum(1 for r in server.requests for _ in r.inputs) == len(sent) >= 8
    for record in server.requests:
        assert sum(len(t.encode()) / 3 for t in record.inputs) <= 151
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0)
    np.testing.assert_allclose(
        matrix[[0, 2]], expected_matrix(["short one", "short two"], DIM), rtol=1e-6
    )
    first_piece = next(s for s in sent if s.startswith("w000"))
    server.reset_log()
    truncated = embed_texts(texts, config.model_copy(update={"overlong": "truncate"}))
    # The truncated text is the split's first piece: already cached, so no request at all.
    assert server.requests == []
    np.testing.assert_allclose(truncated[1], expected_matrix([first_piece], DIM)[0], rtol=1e-6)


def test_api_key_never_written_logged_or_raised(
    server: OpenAITestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary = f"canary{uuid.uuid4().hex}"
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", canary)
    server.api_key = canary
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    config = fast_config(server, cache, max_concurrency=2, max_retries=2)
    embed_texts(TEXTS[:10], config)  # success path writes cache files
    errors: list[BaseException] = []
    for fault in ("500", "429", "truncated", "stall"):
        server.set_fault(fault)
        with pytest.raises(EmbeddingError) as info:
            embed_texts([f"{fault} {t}" for t in TEXTS[:4]], config)
        errors.append(info.value)
    server.set_fault(None)
    server.api_key = "a-different-key"  # 401 whose body quotes the key we sent
    with pytest.raises(EmbeddingError) as info:
        embed_texts(["never cached"], config)
    errors.append(info.value)
    out, err = capsys.readouterr()
    texts = [out, err, caplog.text] + [
        "".join(traceback.format_exception(e)) + repr(e) for e in errors
    ]
    assert all(canary not in text for text in texts)
    assert "Incorrect API key provided" in str(errors[-1])
    assert files_containing(tmp_path, canary) == []
