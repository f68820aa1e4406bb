"""Bad inputs stop the pipeline at the right stage with a message naming file, row and field.

Dataset problems (the validation engineer's fixtures in ``tests/fixtures/bad``) stop
``matryoshka validate`` with exit code 1; embeddings with NaN or the wrong dimension stop
``matryoshka embed``. In every case nothing downstream (``runs/pretrain``) exists afterwards,
and stale outputs of an earlier good run are gone, so no later stage can consume them.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.stages import BAD, DIM, FAST, REPO, TINY, assert_cli_failure, unit_rows

import components.embedding as embedding_package
from components import cli
from components.embedding import EmbeddingArtifacts

CASES = {
    "malformed_jsonl": "malformed_jsonl/corpus.jsonl, row 3, field 'text': malformed JSON",
    "duplicate_ids": "duplicate_ids/corpus.jsonl, row 4, field '_id': 'd2'",
    "empty_texts": "empty_texts/corpus.jsonl, row 2, field 'text': ''",
    "unknown_qrels_ids": "unknown_qrels_ids/qrels/train.tsv, row 3, field 'query-id': 'q9'",
    "non_numeric_score": "non_numeric_score/qrels/test.tsv, row 3, field 'score': score must "
    "be an integer",
    "bad_labels": "bad_labels/qrels/test.tsv, row 3, field 'score': -1",
    "wrong_text_type": "wrong_text_type/corpus.jsonl, row 2, field 'text': expected a string, "
    "got int 42",
    "float_ids": "float_ids/queries.jsonl, row 2, field 'id': ids must be strings or integers, "
    "got float 2.0",
    "missing_queries": "missing_queries: no queries file (queries.jsonl, queries.jsonl.gz or "
    "queries.parquet), but qrels/test.tsv has relevance labels",
}


def args(runs: Path, *extra: str) -> list[str]:
    out = ["--params", str(REPO / "params.yaml"), "--runs-dir", str(runs)]
    for key, value in FAST.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out + list(extra)


def stale_outputs(runs: Path) -> None:
    """What an earlier, successful run on good data left behind."""
    for stage, name in (
        ("validation", "passed.json"),
        ("embeddings", "meta.json"),
        ("pretrain", "history.json"),
    ):
        (runs / stage).mkdir(parents=True, exist_ok=True)
        (runs / stage / name).write_text("{}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_rejects_bad_dataset(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    stale_outputs(runs)
    code = cli.main(["validate", *args(runs, "--dataset", str(BAD / case))])
    err = capsys.readouterr().err
    assert_cli_failure(code, err, 1, CASES[case])
    assert "FAILED" in err or "failed" in err
    assert not (runs / "validation" / "passed.json").exists()
    assert (runs / "validation" / "summary.txt").is_file()  # kept for inspection


QUERIES = b'{"_id": "q1", "text": "what is alpha?"}\n'
QRELS = b"query-id\tcorpus-id\tscore\nq1\td1\t1\n"
CORPUS = b'{"_id": "d1", "title": "Alpha", "text": "Alpha document text."}\n'


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


# Files that are awkward to commit (binary, non-UTF-8): file name -> bytes, expected message.
GENERATED: dict[str, tuple[dict[str, bytes], str]] = {
    "int64_text_parquet": (
        {"corpus.parquet": _parquet(pd.DataFrame({"id": ["d1"], "text": [7]}))},
        "corpus.parquet, row 1, field 'text': expected a string, got int 7",
    ),
    "float_ids_parquet": (
        {"corpus.parquet": _parquet(pd.DataFrame({"id": [1.0], "text": ["a"]}))},
        "corpus.parquet, row 1, field 'id': ids must be strings or integers, got float 1.0",
    ),
    "corrupt_parquet": (
        {"corpus.parquet": b"not parquet"},
        "corpus.parquet: unreadable Parquet file (",
    ),
    "non_utf8_jsonl": (
        {"corpus.jsonl": CORPUS + b'{"_id": "d2", "text": "caf\xe9"}\n'},
        "corpus.jsonl, row 2, field 'text': not valid UTF-8: byte 0xe9 at byte column 27",
    ),
    "non_utf8_jsonl_gz": (
        {"corpus.jsonl.gz": gzip.compress(CORPUS + b'{"_id": "d2", "text": "\xff"}\n')},
        "corpus.jsonl.gz, row 2, field 'text': not valid UTF-8: byte 0xff at byte column 24",
    ),
    "non_utf8_qrels": (
        {"qrels/test.tsv": QRELS + b"q\xff\td1\t1\n"},
        "qrels/test.tsv, row 3, field 'query-id': not valid UTF-8: byte 0xff at byte column 2",
    ),
}


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_validate_rejects_generated_bad_files(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, expected = GENERATED[case]
    dataset = tmp_path / case
    (dataset / "qrels").mkdir(parents=True)
    defaults = {"queries.jsonl": QUERIES, "qrels/test.tsv": QRELS}
    if not any(name.startswith("corpus.") for name in files):
        defaults["corpus.jsonl"] = CORPUS
    for name, data in {**defaults, **files}.items():
        (dataset / name).write_bytes(data)
    runs = tmp_path / "runs"
    stale_outputs(runs)
    code = cli.main(["validate", *args(runs, "--dataset", str(dataset))])
    assert_cli_failure(code, capsys.readouterr().err, 1, f"{case}/{expected}")
    assert not (runs / "validation" / "passed.json").exists()


def test_pipeline_stops_at_first_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stages chained like DVC/Prefect run them: no stage after the failing one runs, and
    none of them finds an output to consume."""
    runs = tmp_path / "runs"
    stale_outputs(runs)
    dataset = str(BAD / "malformed_jsonl")
    code = cli.main(["validate", *args(runs, "--dataset", dataset)])
    assert_cli_failure(code, capsys.readouterr().err, 1, "malformed_jsonl/corpus.jsonl, row 3")
    # Even run by hand afterwards, the later stages refuse instead of using stale data.
    code = cli.main(["embed", *args(runs, "--dataset", dataset)])
    assert_cli_failure(code, capsys.readouterr().err, 1, "malformed_jsonl/corpus.jsonl, row 3")
    assert not (runs / "embeddings").exists()
    code = cli.main(["pretrain", *args(runs)])
    assert_cli_failure(code, capsys.readouterr().err, 1, "run the embed stage first")
    assert not (runs / "pretrain").exists()


def _fake_extraction(monkeypatch: pytest.MonkeyPatch, corrupt: str) -> None:
    def fake(dataset: Any, config: Any, out_dir: Path) -> EmbeddingArtifacts:
        rng = np.random.default_rng(1)
        d = DIM + 2 if corrupt == "dim" else DIM
        corpus = unit_rows(rng.standard_normal((len(dataset.corpus), d)))
        queries = unit_rows(rng.standard_normal((len(dataset.queries), d)))
        if corrupt == "nan":
            queries[4, 1] = np.nan
        return EmbeddingArtifacts(
            Path(out_dir),
            dataset.corpus["id"].tolist(),
            corpus,
            dataset.queries["id"].tolist(),
            queries,
            {},
        )

    monkeypatch.setattr(embedding_package, "embed_dataset", fake)


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        ("nan", "embeddings/queries.npy, row 5, field 'vector': nan at dim 1"),
        ("dim", "embeddings/corpus.npy, row 1, field 'dim': 18 [id='d0']"),
    ],
)
def test_embed_rejects_bad_embeddings(
    corrupt: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_extraction(monkeypatch, corrupt)
    runs = tmp_path / "runs"
    stale_outputs(runs)
    code = cli.main(
        ["embed", *args(runs, "--dataset", str(TINY), "--set", f"embedding.dimensions={DIM}")]
    )
    err = capsys.readouterr().err
    kept = runs / "embeddings.failed-validation"
    assert_cli_failure(code, err, 1, expected, f"Validation artifacts: {kept}")
    assert not (runs / "embeddings").exists()
    assert (kept / "summary.txt").is_file()
    code = cli.main(["pretrain", *args(runs)])
    assert_cli_failure(code, capsys.readouterr().err, 1, "run the embed stage first")
    assert not (runs / "pretrain").exists()
