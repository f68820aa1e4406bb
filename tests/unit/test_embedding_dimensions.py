"""A response of the wrong dimension must not poison the cache (``dimensions`` unset).

Against the OpenAI-protocol test server on 127.0.0.1 (384-d, like MiniLM) whose ``dim`` fault
answers one batch with 383-d vectors: the expected dimension comes from a trusted source or a
quorum of responses, never from whichever response came first; a namespace already holding
vectors of a wrong or mixed dimension is repaired (files moved to ``quarantine/``), not
trusted, and not left for the user to delete.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers import OpenAITestServer, expected_matrix
from helpers.embedding_servers.helpers import fast_config

from components.embedding import EmbeddingConfig, embed_texts
from components.embedding.batching import text_key
from components.embedding.cache import EmbeddingCache, Namespace
from components.embedding.dimensions import ExpectedDimension, configured_dimension
from components.embedding.extract import namespace_for
from components.embedding.providers import close_providers, provider_identity

KEY = "test-key-dimensions-01"
D = 384
TEXTS = [f"passage {i} about topic {i % 5}" for i in range(40)]  # 10 batches of 4


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", KEY)
    with OpenAITestServer(api_key=KEY, dim=D) as srv:
        yield srv
    close_providers()


def _config(server: OpenAITestServer, cache_dir: Path, max_concurrency: int) -> EmbeddingConfig:
    return fast_config(
        server, cache_dir, dimensions=None, batch_size=4, max_concurrency=max_concurrency
    )


def _handle(config: EmbeddingConfig) -> EmbeddingCache:
    """A fresh handle on the documents' cache namespace (as another process would open it)."""
    namespace = namespace_for(config, provider_identity(config), "document")
    return EmbeddingCache(config.cache_dir, namespace)


def _namespace_dir(config: EmbeddingConfig) -> Path:
    return _handle(config).dir


def _file_dims(directory: Path) -> list[int]:
    dims = []
    for path in sorted(directory.glob("*.npz")):
        with np.load(path) as data:
            dims.append(int(data["vectors"].shape[1]))
    return dims


def _release_after_first_answer(server: OpenAITestServer) -> None:
    """Let held requests through once the first answer has gone out (and been read: the
    short pause only orders the answers; no assertion depends on it)."""
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    server.release()


def _write_segment(cache: EmbeddingCache, texts: list[str], dim: int) -> None:
    """Cache ``texts`` with ``dim``-d vectors (correct ones for ``D``), as an older version or
    another process would have left them."""
    vectors = expected_matrix(texts, dim) if dim == D else np.ones((len(texts), dim), np.float32)
    cache.put([text_key(t) for t in texts], vectors)


@pytest.mark.parametrize("max_concurrency", [1, 4], ids=["sequential", "concurrent"])
def test_first_response_of_wrong_dimension_is_not_the_reference(
    server: OpenAITestServer, tmp_path: Path, max_concurrency: int
) -> None:
    server.add_fault("dim")  # the very first request answers 383-d vectors ...
    server.hold_after(1)  # ... and is the first answer: the others wait until it is out
    releaser = threading.Thread(target=_release_after_first_answer, args=(server,), daemon=True)
    releaser.start()
    config = _config(server, tmp_path, max_concurrency)
    matrix = embed_texts(TEXTS, config)
    releaser.join(5)
    assert matrix.shape == (len(TEXTS), D)
    np.testing.assert_allclose(matrix, expected_matrix(TEXTS, D), rtol=1e-6)
    assert [r.fault for r in server.requests].count("dim") == 1
    assert sorted(server.all_inputs()) == sorted(TEXTS)  # the faulty batch was asked again
    directory = _namespace_dir(config)
    assert set(_file_dims(directory)) == {D} and not (directory / "quarantine").exists()
    assert json.loads((directory / "namespace.json").read_text())["verified_dimension"] == D

    # The verified dimension is the reference of the next run: a faulty batch is retried.
    server.reset_log()
    server.add_fault("dim")
    more = [f"new passage {i}" for i in range(8)]
    np.testing.assert_allclose(embed_texts(more, config), expected_matrix(more, D), rtol=1e-6)
    assert len(server.requests) == 3 and [r.fault for r in server.requests].count("dim") == 1


@pytest.mark.parametrize("max_concurrency", [1, 4], ids=["sequential", "concurrent"])
def test_two_disagreeing_batches_are_both_requested_again(
    server: OpenAITestServer, tmp_path: Path, max_concurrency: int
) -> None:
    server.add_fault("dim")  # 383 vs 384, one vote each, and no further batch to decide
    config = _config(server, tmp_path, max_concurrency)
    texts = TEXTS[:8]
    np.testing.assert_allclose(embed_texts(texts, config), expected_matrix(texts, D), rtol=1e-6)
    faults = [r.fault for r in server.requests]
    assert len(faults) == 4 and faults.count("dim") == 1  # both held, both asked again
    assert set(_file_dims(_namespace_dir(config))) == {D}


@pytest.mark.parametrize("max_concurrency", [1, 4], ids=["sequential", "concurrent"])
def test_rerun_repairs_a_cache_poisoned_by_a_wrong_dimension(
    server: OpenAITestServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    max_concurrency: int,
) -> None:
    config = _config(server, tmp_path, max_concurrency)
    poisoned = TEXTS[:4]
    _write_segment(
        _handle(config), poisoned, D - 1
    )  # what a run whose first response was faulty left
    caplog.set_level(logging.WARNING, logger="components.embedding.cache")
    matrix = embed_texts(TEXTS, config)  # no "delete the cache by hand"
    np.testing.assert_allclose(matrix, expected_matrix(TEXTS, D), rtol=1e-6)
    assert set(poisoned) <= set(server.all_inputs())  # the poisoned texts were re-requested
    directory = _namespace_dir(config)
    quarantine = directory / "quarantine"
    assert set(_file_dims(directory)) == {D}
    assert _file_dims(quarantine) == [D - 1]  # moved aside, not deleted
    assert str(quarantine) in caplog.text and "dimension 383" in caplog.text
    server.reset_log()
    np.testing.assert_array_equal(embed_texts(TEXTS, config), matrix)
    assert server.requests == []  # repaired for good


def test_mixed_dimension_namespace_is_repaired_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = Namespace(provider="openai", model="m", dimensions=None, normalize=True, task=None)
    # Two processes that disagreed: each handle opened an empty namespace, then wrote.
    first, second = EmbeddingCache(tmp_path, namespace), EmbeddingCache(tmp_path, namespace)
    good = [text_key(f"good {i}") for i in range(3)]
    for i, key in enumerate(good):
        first.put([key], np.full((1, 4), i, np.float32))
    second.put([text_key("bad")], np.ones((1, 3), np.float32))
    caplog.set_level(logging.WARNING, logger="components.embedding.cache")

    reopened = EmbeddingCache(tmp_path, namespace)  # no CacheCorruptError
    assert reopened.dim == 4
    assert reopened.contains(good + [text_key("bad")]).tolist() == [True, True, True, False]
    np.testing.assert_array_equal(reopened.get(good)[:, 0], [0, 1, 2])
    quarantine = reopened.dir / "quarantine"
    assert _file_dims(quarantine) == [3] and _file_dims(reopened.dir) == [4, 4, 4]
    assert str(quarantine) in caplog.text
    # The handle that wrote the minority sees the repair on refresh.
    second.refresh()
    assert second.dim == 4 and not second.contains([text_key("bad")]).any()


def test_mixed_namespace_rerun_requests_only_the_quarantined_texts(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    config = _config(server, tmp_path, max_concurrency=4)
    first, second = _handle(config), _handle(config)  # two processes that disagreed
    for start in (0, 4, 8):
        _write_segment(first, TEXTS[start : start + 4], D)
    _write_segment(second, TEXTS[12:16], D - 1)
    matrix = embed_texts(TEXTS[:20], config)
    np.testing.assert_allclose(matrix, expected_matrix(TEXTS[:20], D), rtol=1e-6)
    assert sorted(server.all_inputs()) == sorted(TEXTS[12:20])


def test_trusted_dimension_rejects_a_consistent_but_wrong_namespace(tmp_path: Path) -> None:
    namespace = Namespace(provider="openai", model="m", dimensions=None, normalize=True, task=None)
    EmbeddingCache(tmp_path, namespace).put([text_key("x")], np.ones((1, 3), np.float32))
    cache = EmbeddingCache(tmp_path, namespace, ExpectedDimension(4, "embedding.dimensions"))
    assert not cache.contains([text_key("x")]).any() and _file_dims(cache.dir / "quarantine") == [3]
    with pytest.raises(ValueError, match="dimension 3 into cache namespace"):
        cache.put([text_key("y")], np.ones((1, 3), np.float32))


def test_configured_dimension_order() -> None:
    public = EmbeddingConfig(provider="openai", model="text-embedding-3-small")
    assert configured_dimension(public, "text-embedding-3-small").value == 1536  # type: ignore[union-attr]
    requested = public.model_copy(update={"dimensions": 256})
    assert configured_dimension(requested, "text-embedding-3-small").value == 256  # type: ignore[union-attr]
    # Behind a base_url any model may answer to the name: only a quorum decides.
    proxied = public.model_copy(update={"base_url": "http://localhost:8000/v1"})
    assert configured_dimension(proxied, "text-embedding-3-small") is None
    gemini = EmbeddingConfig(provider="google", model="models/gemini-embedding-001")
    assert configured_dimension(gemini, "gemini-embedding-001").value == 3072  # type: ignore[union-attr]
    assert (
        configured_dimension(EmbeddingConfig(provider="openai", model="my-model"), "my-model")
        is None
    )
