"""Dataset suites: each bad input on its own tiny dataset stops at validation with a summary
naming the file, the row and the field; SciFact passes; artifacts are complete and atomic."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers.stages import BAD, REPO, assert_cli_failure

from components.atomic import staged_directory
from components.data import load_dataset
from components.validation import (
    DataValidationError,
    ValidationConfig,
    ValidationReport,
    validate_dataset,
)
from components.validation.cli import main as cli_main

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SCIFACT = REPO / "data" / "scifact"


def _failing(report: ValidationReport) -> str:
    assert not report.success
    with pytest.raises(DataValidationError) as info:
        report.raise_for_failures()
    assert isinstance(info.value, ValueError)
    assert str(info.value) == report.summary()
    return report.summary()


def test_malformed_jsonl_line_is_a_failed_parse_check() -> None:
    report = validate_dataset(BAD / "malformed_jsonl")
    summary = _failing(report)
    assert [s.name for s in report.suites] == ["parse"]
    assert "[parse]" in summary
    assert "malformed_jsonl/corpus.jsonl, row 3, field 'text': malformed JSON" in summary


def test_non_numeric_score_is_a_failed_parse_check() -> None:
    summary = _failing(validate_dataset(BAD / "non_numeric_score"))
    assert (
        "non_numeric_score/qrels/test.tsv, row 3, field 'score': score must be an "
        "integer, got 'high'"
    ) in summary


def test_duplicate_ids_in_corpus_and_queries() -> None:
    report = validate_dataset(BAD / "duplicate_ids")
    summary = _failing(report)
    corpus = report.suite("corpus").failures
    assert [o.expectation_type for o in corpus] == ["expect_column_values_to_be_unique"]
    assert (corpus[0].unexpected_count, corpus[0].element_count) == (2, 4)
    assert "2 of 4 rows unexpected" in summary
    assert "duplicate_ids/corpus.jsonl, row 2, field '_id': 'd2'" in summary
    assert "duplicate_ids/corpus.jsonl, row 4, field '_id': 'd2'" in summary
    assert "duplicate_ids/queries.jsonl, row 3, field '_id': 'q1'" in summary
    assert report.suite("qrels_test").success


def test_empty_texts_user_format() -> None:
    report = validate_dataset(BAD / "empty_texts")
    summary = _failing(report)
    assert "empty_texts/corpus.jsonl, row 2, field 'text': '' [id='d2']" in summary
    assert "empty_texts/corpus.jsonl, row 4, field 'text': '   ' [id='d4']" in summary
    assert "empty_texts/queries.jsonl, row 2, field 'text': ''" in summary
    types = {o.expectation_type for o in report.failures}
    assert "expect_column_values_to_match_regex" in types


def test_qrels_with_unknown_ids() -> None:
    report = validate_dataset(BAD / "unknown_qrels_ids")
    summary = _failing(report)
    assert [s.name for s in report.suites if not s.success] == ["qrels_train"]
    assert "unknown_qrels_ids/qrels/train.tsv, row 3, field 'query-id': 'q9'" in summary
    assert "unknown_qrels_ids/qrels/train.tsv, row 4, field 'corpus-id': 'd9'" in summary
    assert "every query id exists in the queries" in summary


def test_bad_labels_negative_duplicate_pair_and_no_positive() -> None:
    report = validate_dataset(BAD / "bad_labels")
    summary = _failing(report)
    assert "bad_labels/qrels/test.tsv, row 3, field 'score': -1" in summary
    assert "bad_labels/qrels/test.tsv, row 4, field 'query-id, corpus-id': ('q1', 'd1')" in summary
    assert "bad_labels/qrels/test.tsv, row 5, field 'score': 0 [query-id='q2'" in summary
    types = [o.expectation_type for o in report.failures]
    assert types == [
        "expect_column_values_to_be_between",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_in_set",
    ]


def test_thresholds_come_from_config() -> None:
    strict = ValidationConfig(query_text_max_chars=10, allow_empty_titles=False)
    report = validate_dataset(BAD / "unknown_qrels_ids", strict)
    failing = {(o.suite, o.expectation_type) for o in report.failures}
    assert ("queries", "expect_column_value_lengths_to_be_between") in failing
    assert "(14 chars)" in report.summary()  # 'what is alpha?'
    relaxed = ValidationConfig(require_positive_per_query=False)
    report = validate_dataset(BAD / "bad_labels", relaxed)
    assert len(report.failures) == 2


def test_loaded_dataset_without_root_uses_positions() -> None:
    data = load_dataset(BAD / "duplicate_ids")
    summary = _failing(validate_dataset(data))
    assert "corpus, row 4, field 'id': 'd2'" in summary


def test_scifact_passes_with_default_thresholds(tmp_path: Path) -> None:
    start = time.perf_counter()
    report = validate_dataset(SCIFACT, ValidationConfig(), tmp_path / "validation")
    elapsed = time.perf_counter() - start
    assert report.success, report.summary()
    assert {s.name: s.row_count for s in report.suites} == {
        "corpus": 5183,
        "queries": 1109,
        "qrels_test": 339,
        "qrels_train": 919,
    }
    assert elapsed < 30
    out = tmp_path / "validation"
    for name in ("corpus", "queries", "qrels_test", "qrels_train"):
        gx_result = json.loads((out / "gx_results" / f"{name}.json").read_text())
        assert gx_result["success"] is True and gx_result["suite_name"] == name
    assert (out / "data_docs" / "index.html").is_file()
    assert "passed" in (out / "summary.txt").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failure_artifacts_and_replacement(tmp_path: Path) -> None:
    out = tmp_path / "validation"
    out.mkdir()
    (out / "stale.txt").write_text("old run")
    report = validate_dataset(BAD / "unknown_qrels_ids", ValidationConfig(), out)
    assert report.artifacts_dir == out
    assert not (out / "stale.txt").exists()
    summary = (out / "summary.txt").read_text()
    assert "row 3, field 'query-id': 'q9'" in summary
    saved = json.loads((out / "report.json").read_text())
    assert saved["success"] is False
    gx_result = json.loads((out / "gx_results" / "qrels_train.json").read_text())
    assert gx_result["success"] is False
    failed = [r for r in gx_result["results"] if not r["success"]]
    rows = [e["row"] for r in failed for e in r["result"]["partial_unexpected_index_list"]]
    assert sorted(rows) == [3, 4]
    pages = list((out / "data_docs" / "validations").rglob("*.html"))
    assert pages, "Data Docs validation pages were not rendered"


def test_staged_directory_leaves_target_untouched_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "summary.txt").write_text("previous complete run")
    with pytest.raises(RuntimeError), staged_directory(target) as stage:
        (stage / "summary.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (target / "summary.txt").read_text() == "previous complete run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("validation:\n  sample_rows: 1\n")
    code = cli_main(
        [
            "--dataset",
            str(BAD / "duplicate_ids"),
            "--params",
            str(params),
            "--out",
            str(tmp_path / "v"),
            "--no-docs",
        ]
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert_cli_failure(code, captured.err, 1)
    assert "duplicate_ids/corpus.jsonl, row 2, field '_id': 'd2'" in printed
    assert "... and 1 more" in printed  # sample_rows: 1 from the params file
    assert not (tmp_path / "v" / "data_docs").exists()
    params.write_text("validation:\n  min_score: 5\n  max_score: 1\n")
    code = cli_main(["--dataset", str(BAD / "duplicate_ids"), "--params", str(params)])
    assert_cli_failure(code, capsys.readouterr().err, 2, "validation: max_score (1) is below")


def test_no_network_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    report = validate_dataset(BAD / "duplicate_ids", ValidationConfig(), tmp_path / "v")
    assert not report.success
    assert (tmp_path / "v" / "data_docs" / "index.html").is_file()
    assert attempts == []


def test_row_numbers_are_file_lines_despite_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "text": "one"}\n\n{"_id": "d2", "text": "two"}\n'
        '{"_id": "d1", "text": "three"}\n'
    )
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what?"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\r\n\r\nq1\td1\t1\r\nq1\tdx\t1\r\n"
    )
    summary = validate_dataset(tmp_path).summary()
    assert "corpus.jsonl, row 1, field '_id': 'd1'" in summary
    assert "corpus.jsonl, row 4, field '_id': 'd1'" in summary
    assert "qrels/test.tsv, row 4, field 'corpus-id': 'dx'" in summary


def test_add_validate_command_wires_into_a_parent_cli() -> None:
    import argparse

    from components.validation.cli import add_validate_command, run_validate_command

    parser = argparse.ArgumentParser(prog="matryoshka")
    add_validate_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", "--dataset", "d", "--out", "o", "--no-docs"])
    assert args.handler is run_validate_command
    assert (args.dataset, args.out, args.no_docs) == (Path("d"), Path("o"), True)


def test_data_docs_with_a_relative_artifacts_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pipeline's default output, runs/validation, is relative to the project.
    monkeypatch.chdir(tmp_path)
    report = validate_dataset(
        REPO / "tests" / "fixtures" / "pipeline" / "tiny", artifacts_dir=Path("runs") / "validation"
    )
    assert report.success
    assert (tmp_path / "runs" / "validation" / "data_docs" / "index.html").exists()


def test_number_in_text_is_a_failed_parse_check() -> None:
    report = validate_dataset(BAD / "wrong_text_type")
    summary = _failing(report)
    assert [s.name for s in report.suites] == ["parse"]
    assert (
        "wrong_text_type/corpus.jsonl, row 2, field 'text': expected a string, got int 42"
    ) in summary


def test_int64_parquet_text_column_fails_validation(tmp_path: Path) -> None:
    pd.DataFrame({"id": ["d1", "d2"], "text": [10, 11]}).to_parquet(tmp_path / "corpus.parquet")
    summary = _failing(validate_dataset(tmp_path))
    assert "corpus.parquet, row 1, field 'text': expected a string, got int 10" in summary


def test_float_ids_are_a_failed_parse_check_not_unknown_qrels_ids() -> None:
    report = validate_dataset(BAD / "float_ids")
    summary = _failing(report)
    assert [s.name for s in report.suites] == ["parse"]
    assert (
        "float_ids/queries.jsonl, row 2, field 'id': ids must be strings or integers, got float 2.0"
    ) in summary
    assert "unknown" not in summary


def test_missing_queries_file_is_a_failed_parse_check() -> None:
    report = validate_dataset(BAD / "missing_queries")
    summary = _failing(report)
    assert [s.name for s in report.suites] == ["parse"]
    assert "missing_queries: no queries file (queries.jsonl, queries.jsonl.gz or " in summary
    assert "but qrels/test.tsv has relevance labels" in summary
    assert "unknown" not in summary
