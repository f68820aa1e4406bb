"""Dataset loading (BEIR layout and user format), fingerprints and input errors."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.stages import BAD

from components.data import DataFormatError, check_dataset, load_dataset, read_qrels

DEMO = Path(__file__).resolve().parents[2] / "data" / "scifact"


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


def user_dataset(root: Path, corpus: pd.DataFrame | pa.Table | list[dict]) -> Path:
    """A user-format dataset with the given corpus (Parquet for a table, else JSONL)."""
    (root / "qrels").mkdir(parents=True)
    if isinstance(corpus, pd.DataFrame):
        corpus.to_parquet(root / "corpus.parquet")
    elif isinstance(corpus, pa.Table):
        pq.write_table(corpus, root / "corpus.parquet")
    else:
        write_jsonl(root / "corpus.jsonl", corpus)
    write_jsonl(root / "queries.jsonl", [{"id": "q1", "text": "a question"}])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n")
    return root


@pytest.mark.parametrize(
    "corpus, expected",
    [
        (
            pd.DataFrame({"id": ["1", "2"], "text": [7, 8]}),  # an int64 column
            r"corpus\.parquet, row 1, field 'text': expected a string, got int 7",
        ),
        (
            [{"id": "1", "text": "ok"}, {"id": "2", "title": 3.5, "text": "ok"}],
            r"corpus\.jsonl, row 2, field 'title': expected a string, got float 3\.5",
        ),
        (
            [{"id": "1", "text": ["a", "list"]}],
            r"corpus\.jsonl, row 1, field 'text': expected a string, got list \['a', 'list'\]",
        ),
    ],
)
def test_non_string_text_or_title_is_rejected_not_converted(
    corpus: pd.DataFrame | list[dict], expected: str, tmp_path: Path
) -> None:
    with pytest.raises(DataFormatError, match=expected):
        load_dataset(user_dataset(tmp_path / "ds", corpus))


def test_number_in_beir_jsonl_text_names_file_row_and_field() -> None:
    with pytest.raises(DataFormatError) as info:
        load_dataset(BAD / "wrong_text_type")
    assert str(info.value).endswith(
        "wrong_text_type/corpus.jsonl, row 2, field 'text': expected a string, got int 42"
    )
    assert (info.value.row, info.value.field_name) == (2, "text")


def test_integer_ids_are_accepted_as_strings(tmp_path: Path) -> None:
    jsonl = load_dataset(user_dataset(tmp_path / "jsonl", [{"id": 1, "text": "one"}]))
    parquet = load_dataset(
        user_dataset(tmp_path / "parquet", pd.DataFrame({"id": [1, 20], "text": ["a", "b"]}))
    )
    assert jsonl.corpus["id"].tolist() == ["1"]
    assert parquet.corpus["id"].tolist() == ["1", "20"]
    check_dataset(parquet, tmp_path / "parquet")  # qrels id '1' resolves


@pytest.mark.parametrize(
    "corpus, expected",
    [
        (
            pd.DataFrame({"id": [1.0, 2.0], "text": ["a", "b"]}),  # a float64 column
            r"corpus\.parquet, row 1, field 'id': ids must be strings or integers, got float 1\.0",
        ),
        (
            [{"id": "1", "text": "a"}, {"id": 1.5, "text": "b"}],
            r"corpus\.jsonl, row 2, field 'id': ids must be strings or integers, got float 1\.5",
        ),
        (
            [{"id": True, "text": "a"}],
            r"corpus\.jsonl, row 1, field 'id': ids must be strings or integers, got bool True",
        ),
        (
            # An int64 column with a null, written without pandas metadata: pandas would
            # read it as float64 (1.0) and reject row 1; the stored int 1 is fine.
            pa.table({"id": pa.array([1, None], pa.int64()), "text": ["a", "b"]}),
            r"corpus\.parquet, row 2, field 'id': missing value",
        ),
    ],
)
def test_non_integer_ids_are_rejected_at_load_time(
    corpus: pd.DataFrame | pa.Table | list[dict], expected: str, tmp_path: Path
) -> None:
    with pytest.raises(DataFormatError, match=expected):
        load_dataset(user_dataset(tmp_path / "ds", corpus))


def test_float_query_ids_name_the_queries_file() -> None:
    with pytest.raises(
        DataFormatError,
        match=r"float_ids/queries\.jsonl, row 2, field 'id': ids must be strings or "
        r"integers, got float 2\.0",
    ):
        load_dataset(BAD / "float_ids")


def test_missing_queries_file_is_named_when_qrels_exist() -> None:
    with pytest.raises(DataFormatError) as info:
        load_dataset(BAD / "missing_queries")
    message = str(info.value)
    assert message.endswith(
        "missing_queries: no queries file (queries.jsonl, queries.jsonl.gz or "
        "queries.parquet), but qrels/test.tsv has relevance labels; add the queries file, "
        "or remove qrels/ for an unsupervised-only dataset"
    )
    assert "unknown" not in message


def test_corpus_without_queries_or_labels_is_an_unsupervised_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "qrels").mkdir(parents=True)
    write_jsonl(root / "corpus.jsonl", [{"id": "d1", "text": "only documents"}])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")  # header only
    ds = load_dataset(root)
    assert (len(ds.corpus), len(ds.queries), len(ds.qrels["test"])) == (1, 0, 0)
    check_dataset(ds, root)


def not_utf8_lines(bad_line: int) -> bytes:
    """CRLF JSONL with multi-byte characters before a lone 0xff on line ``bad_line``:
    the error lies past the decoder's first buffer, and byte and character columns differ."""
    lines = [
        json.dumps({"_id": f"d{n}", "title": "café", "text": f"doc {n}"}, ensure_ascii=False)
        for n in range(1, 2000)
    ]
    lines[bad_line - 1] = '{"_id": "bad", "title": "café", "text": "x\udcff"}'
    return "\r\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\r\n"


@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.jsonl.gz"])
def test_non_utf8_byte_names_line_byte_column_and_field(name: str, tmp_path: Path) -> None:
    root = make_beir(tmp_path / "ds")
    (root / "corpus.jsonl").unlink()
    data = b"\xef\xbb\xbf" + not_utf8_lines(bad_line=1500)  # a BOM does not shift rows
    (root / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    # '{"_id": "bad", "title": "café", "text": "x' is 43 bytes (é is two).
    with pytest.raises(
        DataFormatError,
        match=rf"{re.escape(name)}, row 1500, field 'text': not valid UTF-8: byte 0xff at "
        r"byte column 44 \(invalid start byte\); save the file as UTF-8$",
    ):
        load_dataset(root)


def test_non_utf8_byte_in_qrels_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td\xe92\t1\r\n")
    with pytest.raises(
        DataFormatError,
        match=r"test\.tsv, row 3, field 'corpus-id': not valid UTF-8: byte 0xe9 at byte "
        r"column 5 \(invalid continuation byte\)",
    ):
        read_qrels(path)


def test_corrupt_parquet_is_a_data_format_error(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "corpus.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match=r"corpus\.parquet: unreadable Parquet file \("):
        load_dataset(root)
