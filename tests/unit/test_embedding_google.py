"""The ``google`` provider (google-genai SDK) against a real Gemini-REST-shaped HTTP server."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers import GoogleTestServer, expected_matrix
from helpers.embedding_servers.helpers import DIM, fast_config, files_containing

from components.embedding import EmbeddingError, embed_texts
from components.embedding.providers import close_providers

KEY = "test-key-google-0001"
TEXTS = [f"passage {i}" for i in range(20)]


def google_expected(texts: list[str], task: str) -> np.ndarray:
    return expected_matrix([f"{task}|{t}" for t in texts], DIM)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleTestServer]:
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", KEY)
    with GoogleTestServer(api_key=KEY, stall_s=5.0, retry_after=0.05) as srv:
        yield srv
    close_providers()


def test_task_types_dimensions_and_separate_cache_keys(
    server: GoogleTestServer, tmp_path: Path
) -> None:
    config = fast_config(server, tmp_path, provider="google")
    docs = embed_texts(TEXTS, config, kind="document")
    queries = embed_texts(TEXTS[:5], config, kind="query")
    np.testing.assert_allclose(docs, google_expected(TEXTS, "RETRIEVAL_DOCUMENT"), rtol=1e-6)
    np.testing.assert_allclose(queries, google_expected(TEXTS[:5], "RETRIEVAL_QUERY"), rtol=1e-6)
    # Same texts as query and document are different cache entries: the query run requested.
    tasks = [t for r in server.ok_requests() for t in r.task_types]
    assert tasks.count("RETRIEVAL_QUERY") == 5 and tasks.count("RETRIEVAL_DOCUMENT") == 20
    assert {r.dimensions for r in server.ok_requests()} == {DIM}
    assert {r.model for r in server.ok_requests()} == {"gemini-embedding-001"}
    assert server.requests[0].path == "/v1/models/gemini-embedding-001:batchEmbedContents"
    server.reset_log()
    embed_texts(TEXTS, config, kind="document")
    embed_texts(TEXTS[:5], config, kind="query")
    assert server.requests == []


@pytest.mark.parametrize(
    "fault", ["429", "500", "stall", "truncated", "count", "dim", "nan", "disconnect"]
)
def test_transient_fault_is_survived(server: GoogleTestServer, tmp_path: Path, fault: str) -> None:
    server.add_fault(fault, times=2)
    config = fast_config(server, tmp_path, provider="google", max_concurrency=1)
    matrix = embed_texts(TEXTS[:12], config, kind="query")
    np.testing.assert_allclose(matrix, google_expected(TEXTS[:12], "RETRIEVAL_QUERY"), rtol=1e-6)


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("429", "rate limited (HTTP 429"),
        ("500", "server error (HTTP 500"),
        ("stall", "timed out"),
        ("truncated", "malformed response"),
        ("count", "7 vectors for 8 inputs"),
        ("dim", "dimension 15, expected 16"),
        ("nan", "NaN or infinite"),
        ("disconnect", "connection error"),
    ],
)
def test_persistent_fault_is_reported_clearly(
    server: GoogleTestServer, tmp_path: Path, fault: str, cause: str
) -> None:
    server.set_fault(fault)
    config = fast_config(server, tmp_path, provider="google", max_concurrency=1, max_retries=1)
    with pytest.raises(EmbeddingError) as info:
        embed_texts(TEXTS[:8], config, kind="document")
    message = str(info.value)
    assert message.startswith(
        "google provider: shard 0 (documents 0-7), batch 1/1 (8 texts) "
        "failed after 2 attempt(s); last error:"
    )
    assert cause in message


def test_api_key_never_leaks(
    server: GoogleTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary = f"canary{uuid.uuid4().hex}"
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", canary)
    server.api_key = canary
    caplog.set_level(logging.DEBUG)
    config = fast_config(server, tmp_path / "cache", provider="google", max_retries=1)
    embed_texts(TEXTS, config)
    errors = []
    for fault in ("500", "429", "truncated", "stall"):
        server.set_fault(fault)
        with pytest.raises(EmbeddingError) as info:
            embed_texts([f"{fault} x"], config)
        errors.append(info.value)
    server.set_fault(None)
    server.api_key = "another-key"
    with pytest.raises(EmbeddingError, match="HTTP 400") as info:
        embed_texts(["rejected"], config)
    errors.append(info.value)
    out, err = capsys.readouterr()
    texts = [out, err, caplog.text] + ["".join(traceback.format_exception(e)) for e in errors]
    assert all(canary not in text for text in texts)
    assert files_containing(tmp_path, canary) == []
