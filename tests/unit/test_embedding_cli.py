"""The ``embed`` command: standalone and as a sub-command, against the OpenAI test server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers import OpenAITestServer, expected_matrix
from helpers.embedding_servers.helpers import write_beir_dataset
from helpers.stages import assert_cli_failure

from components.data import load_dataset
from components.embedding import load_embeddings
from components.embedding.cli import main
from components.embedding.providers import close_providers

KEY = "cli-test-key-0001"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("CLI_TEST_KEY", KEY)
    with OpenAITestServer(api_key=KEY, dim=24) as srv:
        yield srv
    close_providers()


def _params(path: Path, server: OpenAITestServer, cache: Path) -> Path:
    path.write_text(
        "dataset:\n  path: somewhere\n"
        "embedding:\n  provider: openai\n  model: cli-model\n"
        f"  base_url: {server.base_url}\n  api_key_env: CLI_TEST_KEY\n"
        f"  cache_dir: {cache}\n  batch_size: 16\n  progress: log\n"
    )
    return path


def test_cli_writes_matrices_in_dataset_order(server: OpenAITestServer, tmp_path: Path) -> None:
    dataset_dir = write_beir_dataset(tmp_path / "data", 50, 7)
    params = _params(tmp_path / "params.yaml", server, tmp_path / "cache")
    out = tmp_path / "emb"
    assert (
        main(
            [
                "--dataset",
                str(dataset_dir),
                "--out",
                str(out),
                "--params",
                str(params),
                "--dimensions",
                "12",
            ]
        )
        == 0
    )
    loaded = load_embeddings(out)
    dataset = load_dataset(dataset_dir)
    np.testing.assert_allclose(
        loaded.corpus, expected_matrix(dataset.corpus_texts(), 12), rtol=1e-6
    )
    np.testing.assert_allclose(
        loaded.queries, expected_matrix(dataset.query_texts(), 12), rtol=1e-6
    )
    assert loaded.corpus_ids == dataset.corpus["id"].tolist()
    assert loaded.query_ids == dataset.queries["id"].tolist()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["provider"] == "openai" and meta["model"] == "cli-model"
    assert meta["dimensions"] == 12 and meta["normalize"] is True
    assert meta["dataset_fingerprint"] == dataset.fingerprint()
    assert meta["n_corpus"] == 50 and meta["n_queries"] == 7 and meta["created_at"]
    assert meta["config"]["api_key_env"] == "CLI_TEST_KEY"
    assert KEY not in (out / "meta.json").read_text()
    # One entry point: the standalone command also runs the GX embeddings suite.
    assert (out / "validation" / "summary.txt").is_file()


def test_input_errors_are_one_message_each(
    server: OpenAITestServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset_dir = write_beir_dataset(tmp_path / "data", 5, 2)
    base = ["--dataset", str(dataset_dir), "--out", str(tmp_path / "o")]
    code = main([*base, "--provider", "openai", "--model", "m", "--batch-size", "5000"])
    assert_cli_failure(
        code, capsys.readouterr().err, 2, "batch_size=5000 exceeds the openai limit of 2048"
    )
    code = main([*base, "--params", str(tmp_path / "missing.yaml")])
    assert_cli_failure(code, capsys.readouterr().err, 2, "params file not found")

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main([*base, "--provider", "openai", "--model", "m", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert_cli_failure(code, err, 2, "set the environment variable OPENAI_API_KEY")

    code = main(["--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert_cli_failure(code, capsys.readouterr().err, 1, "dataset directory not found")

    server.set_fault("500")
    params = _params(tmp_path / "params.yaml", server, tmp_path / "cache2")
    code = main(
        [
            "--dataset",
            str(dataset_dir),
            "--out",
            str(tmp_path / "o"),
            "--params",
            str(params),
            "--max-retries",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert_cli_failure(
        code, err, 75, "openai provider: shard 0 (documents 0-4), batch 1/1 (5 texts) failed"
    )
