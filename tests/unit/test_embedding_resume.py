"""Crash safety: a CLI run killed with SIGKILL mid-corpus resumes without paying twice.

The CLI (``python -m components.embedding``) runs in a subprocess against the OpenAI-protocol
test server. The server answers the first requests and then holds every further one; once
the client has cached all answered batches it is killed with SIGKILL (the held requests are
"in flight" and die with it). The re-run must request only what was not answered, and end
with exactly the matrix of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers import OpenAITestServer
from helpers.embedding_servers.helpers import write_beir_dataset
from helpers.stages import REPO

from components.embedding import load_embeddings
from components.embedding.cli import main
from components.embedding.providers import close_providers

KEY = "resume-test-key-0001"
N_DOCS, N_QUERIES, BATCH, ANSWERED = 600, 20, 10, 25


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("RESUME_TEST_KEY", KEY)
    with OpenAITestServer(api_key=KEY, dim=32) as srv:
        yield srv
    close_providers()


def _args(dataset: Path, out: Path, cache: Path, server: OpenAITestServer) -> list[str]:
    return [
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--provider",
        "openai",
        "--model",
        "resume-model",
        "--base-url",
        server.base_url,
        "--api-key-env",
        "RESUME_TEST_KEY",
        "--cache-dir",
        str(cache),
        "--batch-size",
        str(BATCH),
        "--max-concurrency",
        "3",
        "--timeout-s",
        "30",
        "--progress",
        "log",
        "--shard-size",
        "250",
    ]


def _segments(cache: Path) -> int:
    return len(list(cache.rglob("seg-*.npz")))


def test_sigkill_mid_corpus_then_rerun_matches_uninterrupted_run(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    dataset = write_beir_dataset(tmp_path / "data", N_DOCS, N_QUERIES)
    cache, out = tmp_path / "cache", tmp_path / "out"
    server.hold_after(ANSWERED)
    env = {**os.environ, "RESUME_TEST_KEY": KEY, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "components.embedding", *_args(dataset, out, cache, server)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while _segments(cache) < ANSWERED or server.in_flight < 3:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the client never cached the answered batches"
            time.sleep(0.05)
        # all answered batches are cached and 3 more requests are in flight: kill it now
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        received_by_first_run = server.received
    finally:
        if proc.poll() is None:
            proc.kill()
        server.release()
        server.hold_after(None)
    log_text = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    assert KEY not in log_text
    assert not (out / "meta.json").exists()
    first_run = [r for r in server.requests if r.number <= ANSWERED]
    answered = {t for r in first_run if r.ok for t in r.inputs}
    assert len(answered) == ANSWERED * BATCH and _segments(cache) == ANSWERED

    assert main(_args(dataset, out, cache, server)) == 0
    rerun = [r for r in server.requests if r.number > received_by_first_run]
    rerun_inputs = [t for r in rerun for t in r.inputs]
    assert answered.isdisjoint(rerun_inputs), "a finished batch was requested twice"
    assert len(rerun_inputs) == len(set(rerun_inputs)) == N_DOCS + N_QUERIES - len(answered)

    resumed = load_embeddings(out)
    clean_out = tmp_path / "clean"
    assert main(_args(dataset, clean_out, tmp_path / "clean-cache", server)) == 0
    clean = load_embeddings(clean_out)
    np.testing.assert_array_equal(resumed.corpus, clean.corpus)
    np.testing.assert_array_equal(resumed.queries, clean.queries)
    assert resumed.corpus_ids == clean.corpus_ids == [f"d{i}" for i in range(N_DOCS)]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_corpus"] == N_DOCS and meta["n_queries"] == N_QUERIES
    assert meta["provider"] == "openai" and meta["dimensions"] == 32
