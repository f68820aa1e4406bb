"""Dataset loading (BEIR layout and user format), fingerprints and input errors."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from components.data import DataFormatError, check_dataset, load_dataset, read_qrels

DEMO = Path(__file__).resolve().parents[1] / "data" / "scifact"


def write_jsonl(path: Path, rows: list[dict], gz: bool = False) -> None:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)


def make_beir(root: Path, gz: bool = False, crlf: bool = True) -> Path:
    root.mkdir(parents=True)
    suffix = ".jsonl.gz" if gz else ".jsonl"
    write_jsonl(
        root / f"corpus{suffix}",
        [
            {"_id": "d1", "title": "T1", "text": "first doc", "metadata": {}},
            {"_id": "d2", "title": "", "text": "second doc", "metadata": {}},
        ],
        gz,
    )
    write_jsonl(root / f"queries{suffix}", [{"_id": "q1", "text": "a question"}], gz)
    (root / "qrels").mkdir()
    eol = "\r\n" if crlf else "\n"
    (root / "qrels" / "test.tsv").write_bytes(
        eol.join(["query-id\tcorpus-id\tscore", "q1\td2\t1", ""]).encode()
    )
    return root


def test_scifact_demo_loads_with_expected_counts() -> None:
    ds = load_dataset(DEMO)
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == 1109
    assert len(ds.qrels["train"]) == 919
    assert len(ds.qrels["test"]) == 339
    assert ds.qrels["test"]["query_id"].nunique() == 300
    check_dataset(ds, DEMO)
    assert (DEMO / "README.md").read_text().count("CC BY-NC 2.0") >= 1


def test_beir_layout_with_crlf_and_gzip(tmp_path: Path) -> None:
    ds = load_dataset(make_beir(tmp_path / "ds", gz=True))
    assert ds.corpus.to_dict("records")[1] == {"id": "d2", "title": "", "text": "second doc"}
    assert ds.qrels["test"].to_dict("records") == [{"query_id": "q1", "doc_id": "d2", "score": 1}]
    assert ds.corpus_texts() == ["T1 first doc", "second doc"]


def test_user_format_parquet_and_jsonl_share_the_fingerprint(tmp_path: Path) -> None:
    beir = load_dataset(make_beir(tmp_path / "beir"))
    user = tmp_path / "user"
    (user / "qrels").mkdir(parents=True)
    pd.DataFrame(
        {"id": ["d2", "d1"], "title": ["", "T1"], "text": ["second doc", "first doc"]}
    ).to_parquet(user / "corpus.parquet")
    write_jsonl(user / "queries.jsonl", [{"id": "q1", "text": "a question"}])
    shutil.copy(tmp_path / "beir" / "qrels" / "test.tsv", user / "qrels" / "test.tsv")
    loaded = load_dataset(user)
    assert loaded.fingerprint() == beir.fingerprint()  # row order and layout ignored


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    ds = load_dataset(make_beir(tmp_path / "a"))
    other = make_beir(tmp_path / "b")
    write_jsonl(other / "queries.jsonl", [{"_id": "q1", "text": "a different question"}])
    assert load_dataset(other).fingerprint() != ds.fingerprint()
    assert len(ds.fingerprint()) == 64


def test_malformed_jsonl_line_names_file_and_row(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "ds")
    with (root / "corpus.jsonl").open("a") as handle:
        handle.write('{"_id": "d3", "text": "unterminated\n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl, row 3: malformed JSON"):
        load_dataset(root)


def test_missing_text_field_names_the_field(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "ds")
    write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "ok"}, {"_id": "q2"}])
    with pytest.raises(DataFormatError, match=r"queries\.jsonl, row 2, field 'text'"):
        load_dataset(root)


def test_non_integer_score_names_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(
        DataFormatError,
        match=r"q\.tsv, row 3, field 'score': score must be "
        r"an integer, got 'high'",
    ):
        read_qrels(path)


def test_qrels_pointing_at_unknown_ids(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "ds")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    with pytest.raises(
        DataFormatError,
        match=r"row 2, field 'corpus-id': unknown corpus id "
        r"'nope'",
    ):
        check_dataset(load_dataset(root), root)


def test_empty_corpus_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "corpus.jsonl").write_text("")
    with pytest.raises(DataFormatError, match="empty corpus"):
        check_dataset(load_dataset(root), root)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "ds")
    write_jsonl(root / "corpus.jsonl", [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}])
    with pytest.raises(DataFormatError, match=r"row 2, field 'id': duplicate id 'd1'"):
        check_dataset(load_dataset(root), root)


def test_missing_directory_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="dataset directory not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataFormatError, match=r"missing qrels split\(s\) \['train'\]"):
        load_dataset(make_beir(tmp_path / "ds"), splits=("train",))
