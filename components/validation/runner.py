"""Running the expectation suites with Great Expectations and collecting the report.

One ephemeral GX context per run: a pandas data source, one dataframe asset and validation
definition per suite, results kept in the context's store so Data Docs can be built from them.
``great_expectations`` is imported only here, inside functions (it takes seconds to import).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.atomic import staged_directory
from components.data import DataFormatError, RetrievalDataset, load_dataset
from components.layout import SUMMARY_FILE
from components.validation.artifacts import write_json
from components.validation.config import ValidationConfig
from components.validation.frames import ROW
from components.validation.report import (
    ExpectationOutcome,
    OffendingRow,
    SuiteResult,
    ValidationReport,
)
from components.validation.sources import (
    TableSource,
    find_table_file,
    json_error_field,
    qrels_source,
    text_table_source,
)
from components.validation.suites import (
    ExpectedIds,
    SuiteSpec,
    build_gx_suite,
    coverage_suite,
    dataset_suites,
    embeddings_suite,
    precheck_suite,
)

DOCS_SITE = "validation_docs"
RESULTS_DIR = "gx_results"
log = logging.getLogger(__name__)

SUITES_DIR = "gx_suites"
DOCS_DIR = "data_docs"


def validate_dataset(
    dataset: str | Path | RetrievalDataset,
    config: ValidationConfig | None = None,
    artifacts_dir: str | Path | None = None,
    *,
    root: str | Path | None = None,
    splits: tuple[str, ...] | None = None,
) -> ValidationReport:
    """Validate a dataset's corpus, queries and every qrels split.

    Args:
        dataset: a dataset directory (loaded with :func:`components.data.load_dataset`) or an
            already-loaded :class:`RetrievalDataset`.
        config: thresholds; defaults to :class:`ValidationConfig()`.
        artifacts_dir: where to write GX results, ``summary.txt``, ``report.json`` and Data
            Docs; ``None`` writes nothing.
        root: for a loaded dataset, the directory it came from, so failures name files and
            line numbers (without it: ``corpus``/``queries``/``qrels/<split>.tsv`` and record
            positions).
        splits: qrels splits to load from a directory (default: all).

    Returns:
        The report. A file that cannot be parsed gives a failed ``parse`` suite naming the
        file, row and field, instead of an exception. Call ``raise_for_failures()`` to stop.
    """
    config = config or ValidationConfig()
    start = time.perf_counter()
    if isinstance(dataset, RetrievalDataset):
        data, base = dataset, Path(root) if root is not None else None
    else:
        base = Path(dataset)
        try:
            data = load_dataset(base, splits=splits)
        except DataFormatError as exc:
            specs = [_parse_failure(exc)]
            return _run(f"dataset '{base.name}'", specs, config, artifacts_dir, start)
    specs = dataset_suites(data, _dataset_sources(data, base), config)
    return _run(f"dataset '{data.name}'", specs, config, artifacts_dir, start)


def validate_embeddings(
    corpus_ids: Sequence[str],
    corpus_matrix: np.ndarray,
    query_ids: Sequence[str],
    query_matrix: np.ndarray,
    expected_dim: int,
    config: ValidationConfig | None = None,
    artifacts_dir: str | Path | None = None,
    *,
    normalized: bool | None = None,
    corpus_source: str = "corpus embeddings",
    query_source: str = "query embeddings",
    corpus_expected: ExpectedIds | None = None,
    query_expected: ExpectedIds | None = None,
) -> ValidationReport:
    """Validate extracted embeddings: one row per text, dimension, dtype, finiteness, norms.

    Args:
        corpus_ids / query_ids: the id of each matrix row, in order.
        corpus_matrix / query_matrix: ``[n, d]`` float matrices.
        expected_dim: the dimension d every row must have.
        config: thresholds; defaults to :class:`ValidationConfig()`.
        artifacts_dir: as in :func:`validate_dataset`.
        normalized: whether rows must have unit L2 norm; default
            ``config.embeddings_normalized``.
        corpus_source / query_source: names of the matrices in the report (e.g. file paths).
            Row N in the report is ``matrix[N - 1]``.
        corpus_expected / query_expected: the dataset ids the rows must equal exactly
            (vectors shipped with the dataset): adds "every id is in the table" to the
            matrix suite and a ``<name>_coverage`` suite "every id of the table has a
            vector" whose rows are the table's.
    """
    if (
        isinstance(expected_dim, bool)
        or not isinstance(expected_dim, int | np.integer)
        or expected_dim <= 0
    ):
        raise ValueError(f"expected_dim must be a positive integer, got {expected_dim!r}")
    config = config or ValidationConfig()
    start = time.perf_counter()
    unit = config.embeddings_normalized if normalized is None else normalized
    specs: list[SuiteSpec] = []
    for name, label, ids, matrix, expected in (
        ("corpus_embeddings", corpus_source, corpus_ids, corpus_matrix, corpus_expected),
        ("query_embeddings", query_source, query_ids, query_matrix, query_expected),
    ):
        array = np.asarray(matrix)
        if expected is not None:
            specs.append(coverage_suite(f"{name}_coverage", label, list(ids), expected))
        try:
            specs.append(
                embeddings_suite(
                    name, label, list(ids), array, expected_dim, unit, config, expected
                )
            )
        except (ValueError, TypeError) as exc:
            specs.append(
                precheck_suite(
                    name,
                    label,
                    "matrix",
                    "the matrix is a 2-D numeric array [n, d]",
                    str(exc),
                    column="is_2d_matrix",
                )
            )
    return _run("embeddings", specs, config, artifacts_dir, start)


def _dataset_sources(data: RetrievalDataset, base: Path | None) -> dict[str, TableSource]:
    corpus_file = find_table_file(base, "corpus") if base else None
    queries_file = find_table_file(base, "queries") if base else None
    sources = {
        "corpus": text_table_source(corpus_file, "corpus", len(data.corpus)),
        "queries": text_table_source(queries_file, "queries", len(data.queries)),
    }
    for split, frame in data.qrels.items():
        path = base / "qrels" / f"{split}.tsv" if base else None
        sources[f"qrels/{split}"] = qrels_source(path, f"qrels/{split}.tsv", len(frame))
    return sources


def _parse_failure(exc: DataFormatError) -> SuiteSpec:
    """A ``parse`` suite from a loader error: file, row and field of the first bad line."""
    message = str(exc)
    prefix = exc.path
    if exc.row is not None:
        prefix += f", row {exc.row}"
    if exc.field_name is not None:
        prefix += f", field '{exc.field_name}'"
    if message.startswith(prefix + ": "):
        message = message[len(prefix) + 2 :]
    field = exc.field_name
    if field is None and exc.row is not None:
        field = json_error_field(Path(exc.path), exc.row)
    return precheck_suite(
        "parse",
        exc.path,
        field,
        "the file can be read and parsed",
        message,
        row=exc.row,
        column="parsed",
    )


def _gx_context(docs_dir: Path | None) -> Any:
    """An ephemeral GX context: no analytics, no progress bars, Data Docs into docs_dir."""
    from components.runtime import configure_environment

    configure_environment()  # GX_ANALYTICS_ENABLED=false before the import
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    if docs_dir is not None:
        context.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),  # GX needs absolute
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _run(
    subject: str,
    specs: list[SuiteSpec],
    config: ValidationConfig,
    artifacts_dir: str | Path | None,
    start: float,
) -> ValidationReport:
    """Run every suite; with an artifact directory, stage and publish it atomically."""
    if artifacts_dir is None:
        return _report(subject, _run_gx(specs, config, None), config, None, start)
    with staged_directory(Path(artifacts_dir)) as stage:
        results = _run_gx(specs, config, stage)
        report = _report(subject, results, config, artifacts_dir, start)
        (stage / SUMMARY_FILE).write_text(report.summary() + "\n", encoding="utf-8")
        write_json(stage / "report.json", report.to_dict())
    return report


def _run_gx(
    specs: list[SuiteSpec], config: ValidationConfig, stage: Path | None
) -> list[SuiteResult]:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    docs = stage / DOCS_DIR if stage is not None and config.build_data_docs else None
    context = _gx_context(docs)
    source = context.data_sources.add_pandas("matryoshka_validation")
    run_id = RunIdentifier(run_name="matryoshka-validation")
    results: list[SuiteResult] = []
    for spec in specs:
        started = time.perf_counter()
        log.info(
            "GX suite %s: %d expectations on %d rows of %s",
            spec.name,
            len(spec.expectations),
            len(spec.frame),
            spec.source.file,
        )
        batch_definition = source.add_dataframe_asset(
            spec.name
        ).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(build_gx_suite(spec))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=spec.name, data=batch_definition, suite=suite)
        )
        result_format = {
            "result_format": "SUMMARY",
            "unexpected_index_column_names": spec.index_columns,
            "partial_unexpected_count": max(20, config.sample_rows),
        }
        gx_result = definition.run(
            batch_parameters={"dataframe": spec.frame}, result_format=result_format, run_id=run_id
        )
        payload = gx_result.to_json_dict()
        results_file = None
        if stage is not None:
            results_file = f"{RESULTS_DIR}/{spec.name}.json"
            write_json(stage / results_file, payload)
            write_json(stage / SUITES_DIR / f"{spec.name}.json", suite.to_json_dict())
        results.append(_suite_result(spec, payload, results_file))
        log.info(
            "GX suite %s: %s in %.1f s",
            spec.name,
            "passed" if results[-1].success else "FAILED",
            time.perf_counter() - started,
        )
    if docs is not None:
        log.info("building GX Data Docs in %s", docs)
        context.build_data_docs(site_names=[DOCS_SITE])
    return results


def _suite_result(
    spec: SuiteSpec, gx_result: dict[str, Any], results_file: str | None
) -> SuiteResult:
    outcomes: list[tuple[int, ExpectationOutcome]] = []
    for item in gx_result["results"]:
        config = item["expectation_config"]
        index = int((config.get("meta") or {}).get("spec_index", len(outcomes)))
        outcomes.append((index, _outcome(spec, index, item)))
    outcomes.sort(key=lambda pair: pair[0])
    return SuiteResult(
        name=spec.name,
        file=spec.source.file,
        row_count=len(spec.frame),
        outcomes=tuple(o for _, o in outcomes),
        results_file=results_file,
    )


def _outcome(spec: SuiteSpec, index: int, item: dict[str, Any]) -> ExpectationOutcome:
    check = spec.expectations[index]
    result = item.get("result") or {}
    exception = _exception_message(item.get("exception_info"))
    samples: list[OffendingRow] = []
    shown = check.shown_columns()
    for entry in result.get("partial_unexpected_index_list") or []:
        if not isinstance(entry, dict):
            continue
        values = [entry.get(c) for c in shown]
        value = values[0] if len(values) == 1 else tuple(values)
        context = tuple(
            (spec.source.field(c), str(entry[c]))
            for c in spec.context_columns
            if c not in shown and entry.get(c) is not None
        )
        row = entry.get(ROW)
        samples.append(
            OffendingRow(
                file=spec.source.file,
                row=int(row) if row is not None else None,
                field=check.field,
                value=value,
                context=context,
                show_length=check.show_length,
                quote=check.quote,
            )
        )
    return ExpectationOutcome(
        suite=spec.name,
        expectation_type=item["expectation_config"]["type"],
        column=check.column_label,
        description=check.description,
        success=bool(item.get("success")),
        file=spec.source.file,
        field=check.field,
        element_count=result.get("element_count"),
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=result.get("unexpected_percent"),
        observed_value=result.get("observed_value"),
        samples=tuple(samples),
        exception=exception,
    )


def _report(
    subject: str,
    suites: list[SuiteResult],
    config: ValidationConfig,
    artifacts_dir: str | Path | None,
    start: float,
) -> ValidationReport:
    return ValidationReport(
        subject=subject,
        suites=tuple(suites),
        artifacts_dir=Path(artifacts_dir) if artifacts_dir else None,
        duration_s=time.perf_counter() - start,
        sample_rows=config.sample_rows,
    )


def _exception_message(info: Any) -> str | None:
    """GX's exception info is one dict, or one dict per failed metric; first message wins."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "an exception")
    return None
