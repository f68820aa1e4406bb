"""The expectation suites: which GX expectations run on which table, with what thresholds.

Suites are declared as plain :class:`SuiteSpec` data (no GX import), then turned into
``gx.ExpectationSuite`` objects by :func:`build_gx_suite` when a run starts. Each expectation
carries how to show its offending rows: the field name as written in the file and the column
whose value names the problem (for a helper column such as ``query_id_known``, the id itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.data import RetrievalDataset
from components.validation import frames
from components.validation.config import ValidationConfig
from components.validation.sources import TableSource

if TYPE_CHECKING:
    import great_expectations as gx

NON_EMPTY = r"\S"
SURROUNDING_SPACE = r"^\s|\s$"
INT_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
]


@dataclass(frozen=True)
class ExpectationSpec:
    """One GX expectation plus how to present its failures.

    Attributes:
        gx_class: class name in ``great_expectations.expectations``.
        kwargs: its arguments (``column``, bounds, ``mostly`` ...).
        description: what the expectation means for this data, in plain words.
        field: the field as named in the file, shown in sample rows.
        value_columns: frame columns whose values are shown for an offending row; default
            the expectation's own column(s).
        show_length: also print the value's length (length-bound expectations).
        quote: quote string values (False for ready-made descriptions).
    """

    gx_class: str
    kwargs: dict[str, Any]
    description: str
    field: str | None = None
    value_columns: tuple[str, ...] = ()
    show_length: bool = False
    quote: bool = True

    @property
    def column_label(self) -> str | None:
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ", ".join(self.kwargs["column_list"])
        return None

    def shown_columns(self) -> tuple[str, ...]:
        if self.value_columns:
            return self.value_columns
        if "column_list" in self.kwargs:
            return tuple(self.kwargs["column_list"])
        if "column" in self.kwargs:
            return (str(self.kwargs["column"]),)
        return ()


@dataclass(frozen=True)
class SuiteSpec:
    """A suite, the table it runs on, and how that table maps back to its file.

    Attributes:
        name: suite name (also the GX asset and the results file name).
        source: the file and the row number of every frame row.
        frame: the table, with a ``row`` column.
        expectations: the checks, in report order.
        context_columns: identifying columns shown next to every offending value.
    """

    name: str
    source: TableSource
    frame: pd.DataFrame
    expectations: tuple[ExpectationSpec, ...]
    context_columns: tuple[str, ...] = field(default=())

    @property
    def index_columns(self) -> list[str]:
        """Columns GX returns for every unexpected row (row number, ids, details)."""
        extra = {c for e in self.expectations for c in e.value_columns}
        columns = [frames.ROW, *self.context_columns]
        columns += sorted(c for c in extra if c not in columns)
        return columns


def _id_checks(column: str, name: str, table: str) -> list[ExpectationSpec]:
    return [
        ExpectationSpec(
            "ExpectColumnValuesToNotBeNull",
            {"column": column},
            f"every {table} row has an id",
            name,
        ),
        ExpectationSpec(
            "ExpectColumnValuesToMatchRegex",
            {"column": column, "regex": NON_EMPTY},
            "ids are non-empty",
            name,
        ),
        ExpectationSpec(
            "ExpectColumnValuesToNotMatchRegex",
            {"column": column, "regex": SURROUNDING_SPACE},
            "ids have no leading or trailing whitespace",
            name,
        ),
        ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": column}, "ids are unique", name),
    ]


def _text_checks(column: str, low: int, high: int, mostly: float) -> list[ExpectationSpec]:
    return [
        ExpectationSpec(
            "ExpectColumnValuesToMatchRegex",
            {"column": column, "regex": NON_EMPTY},
            "texts are non-empty (not blank)",
            column,
        ),
        ExpectationSpec(
            "ExpectColumnValueLengthsToBeBetween",
            {"column": column, "min_value": low, "max_value": high, "mostly": mostly},
            f"texts have {low} to {high} characters",
            column,
            show_length=True,
        ),
    ]


def corpus_suite(
    dataset: RetrievalDataset, source: TableSource, config: ValidationConfig
) -> SuiteSpec:
    """Corpus: at least one document; unique, non-empty ids; non-empty texts within bounds."""
    id_name = source.field("id")
    checks = [
        ExpectationSpec(
            "ExpectTableRowCountToBeBetween",
            {"min_value": 1},
            "the corpus has at least one document",
        ),
        *_id_checks("id", id_name, "corpus"),
        *_text_checks(
            "text",
            config.corpus_text_min_chars,
            config.corpus_text_max_chars,
            config.text_length_mostly,
        ),
        ExpectationSpec(
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "title", "min_value": 0, "max_value": config.title_max_chars},
            f"titles have at most {config.title_max_chars} characters",
            "title",
            show_length=True,
        ),
    ]
    if not config.allow_empty_titles:
        checks.append(
            ExpectationSpec(
                "ExpectColumnValuesToMatchRegex",
                {"column": "title", "regex": NON_EMPTY},
                "titles are non-empty (allow_empty_titles: false)",
                "title",
            )
        )
    frame = frames.corpus_frame(dataset, source.rows)
    return SuiteSpec("corpus", source, frame, tuple(checks), context_columns=("id",))


def queries_suite(
    dataset: RetrievalDataset, source: TableSource, config: ValidationConfig
) -> SuiteSpec:
    """Queries: unique, non-empty ids; non-empty texts within bounds."""
    checks = [
        *_id_checks("id", source.field("id"), "query"),
        *_text_checks(
            "text",
            config.query_text_min_chars,
            config.query_text_max_chars,
            config.text_length_mostly,
        ),
    ]
    frame = frames.queries_frame(dataset, source.rows)
    return SuiteSpec("queries", source, frame, tuple(checks), context_columns=("id",))


def qrels_suite(
    dataset: RetrievalDataset, split: str, source: TableSource, config: ValidationConfig
) -> SuiteSpec:
    """Relevance labels of one split: ids exist, integer scores in range, unique pairs,
    at least one positive label per labelled query."""
    q_name, d_name = source.field("query_id"), source.field("doc_id")
    score_range = (
        f">= {config.min_score}"
        if config.max_score is None
        else f"in [{config.min_score}, {config.max_score}]"
    )
    checks: list[ExpectationSpec] = []
    if config.min_qrels_rows:
        checks.append(
            ExpectationSpec(
                "ExpectTableRowCountToBeBetween",
                {"min_value": config.min_qrels_rows},
                f"the split has at least {config.min_qrels_rows} labels",
            )
        )
    checks += [
        ExpectationSpec(
            "ExpectColumnValuesToMatchRegex",
            {"column": "query_id", "regex": NON_EMPTY},
            "query ids are non-empty",
            q_name,
        ),
        ExpectationSpec(
            "ExpectColumnValuesToMatchRegex",
            {"column": "doc_id", "regex": NON_EMPTY},
            "corpus ids are non-empty",
            d_name,
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet",
            {"column": "query_id_known", "value_set": [True]},
            "every query id exists in the queries",
            q_name,
            value_columns=("query_id",),
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet",
            {"column": "doc_id_known", "value_set": [True]},
            "every corpus id exists in the corpus",
            d_name,
            value_columns=("doc_id",),
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInTypeList",
            {"column": "score", "type_list": INT_TYPES},
            "scores are integers",
            source.field("score"),
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeBetween",
            {"column": "score", "min_value": config.min_score, "max_value": config.max_score},
            f"scores are {score_range}",
            source.field("score"),
        ),
        ExpectationSpec(
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["query_id", "doc_id"]},
            "no duplicate (query, document) pairs",
            f"{q_name}, {d_name}",
        ),
    ]
    if config.require_positive_per_query:
        checks.append(
            ExpectationSpec(
                "ExpectColumnValuesToBeInSet",
                {"column": "query_has_positive", "value_set": [True]},
                f"every labelled query has a positive label (score >= {config.positive_min_score})",
                source.field("score"),
                value_columns=("score",),
            )
        )
    frame = frames.qrels_frame(dataset, split, source.rows, config.positive_min_score)
    return SuiteSpec(
        f"qrels_{split}", source, frame, tuple(checks), context_columns=("query_id", "doc_id")
    )


def dataset_suites(
    dataset: RetrievalDataset, sources: dict[str, TableSource], config: ValidationConfig
) -> list[SuiteSpec]:
    """Corpus, queries and one qrels suite per split. ``sources`` keys: ``corpus``,
    ``queries`` and ``qrels/<split>``."""
    suites = [
        corpus_suite(dataset, sources["corpus"], config),
        queries_suite(dataset, sources["queries"], config),
    ]
    for split in sorted(dataset.qrels):
        suites.append(qrels_suite(dataset, split, sources[f"qrels/{split}"], config))
    return suites


@dataclass(frozen=True)
class ExpectedIds:
    """The ids a set of vectors must cover exactly: a dataset table's ids, in table order.

    Attributes:
        source: the table as shown to the user (e.g. ``data/mine/corpus.jsonl``).
        ids: its ids; every one needs exactly one vector and no other id may have one.
    """

    source: str
    ids: tuple[str, ...]


def embeddings_suite(
    name: str,
    label: str,
    ids: list[str] | tuple[str, ...],
    matrix: np.ndarray,
    expected_dim: int,
    normalized: bool,
    config: ValidationConfig,
    expected: ExpectedIds | None = None,
) -> SuiteSpec:
    """Embeddings of one table: one row per text, the expected dimension and dtype, finite
    values, and unit norms (``normalized``) or non-zero norms. With ``expected`` (vectors
    that came with the dataset), also: every id is one of the table's ids.

    Raises:
        ValueError: the matrix is not 2-D (reported as a failed ``shape`` check by the runner).
    """
    frame = frames.embedding_frame(ids, matrix)
    known: tuple[ExpectationSpec, ...] = ()
    if expected is not None:
        table = set(expected.ids)
        frame["in_dataset"] = [i is None or i in table for i in frame["id"]]
        known = (
            ExpectationSpec(
                "ExpectColumnValuesToBeInSet",
                {"column": "in_dataset", "value_set": [True]},
                f"every id is in {expected.source} (no extra ids)",
                "id",
                value_columns=("id",),
            ),
        )
    tol = config.embedding_norm_tolerance
    norm_check = (
        ExpectationSpec(
            "ExpectColumnValuesToBeBetween",
            {"column": "norm", "min_value": 1 - tol, "max_value": 1 + tol},
            f"vectors are L2-normalised (|norm - 1| <= {tol:g})",
            "norm",
        )
        if normalized
        else ExpectationSpec(
            "ExpectColumnValuesToBeBetween",
            {"column": "norm", "min_value": config.embedding_min_norm},
            f"vectors have norm >= {config.embedding_min_norm:g}",
            "norm",
        )
    )
    checks = (
        ExpectationSpec(
            "ExpectColumnValuesToNotBeNull",
            {"column": "id"},
            "every matrix row has an id (as many ids as rows)",
            "id",
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet",
            {"column": "has_vector", "value_set": [True]},
            "every id has a matrix row (as many rows as ids)",
            "id",
            value_columns=("id",),
        ),
        ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "id"}, "ids are unique", "id"),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet",
            {"column": "dim", "value_set": [int(expected_dim)]},
            f"vectors have the expected dimension {expected_dim}",
            "dim",
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet",
            {"column": "dtype", "value_set": list(config.embedding_dtypes)},
            f"dtype is one of {list(config.embedding_dtypes)}",
            "dtype",
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet",
            {"column": "is_finite", "value_set": [True]},
            "all values are finite (no NaN or inf)",
            "vector",
            value_columns=("nonfinite",),
            quote=False,
        ),
        norm_check,
        *known,
    )
    source = TableSource(label, tuple(int(r) for r in frame[frames.ROW]), {})
    return SuiteSpec(name, source, frame, checks, context_columns=("id",))


def coverage_suite(
    name: str, vectors_label: str, vector_ids: list[str], expected: ExpectedIds
) -> SuiteSpec:
    """Every id of a dataset table has a vector in ``vectors_label`` (rows: the table's)."""
    frame = frames.coverage_frame(list(expected.ids), set(vector_ids))
    check = ExpectationSpec(
        "ExpectColumnValuesToBeInSet",
        {"column": "has_vector", "value_set": [True]},
        f"every id of {expected.source} has a vector in {vectors_label}",
        "id",
        value_columns=("id",),
    )
    source = TableSource(expected.source, tuple(int(r) for r in frame[frames.ROW]), {})
    return SuiteSpec(name, source, frame, (check,))


def build_gx_suite(spec: SuiteSpec) -> gx.ExpectationSuite:
    """The GX suite of ``spec``; each expectation's ``meta`` holds its index and field."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=spec.name, meta={"file": spec.source.file})
    for index, check in enumerate(spec.expectations):
        cls = getattr(gx.expectations, check.gx_class)
        meta = {"spec_index": index, "file": spec.source.file, "field": check.field}
        suite.add_expectation(cls(**check.kwargs, description=check.description, meta=meta))
    return suite


def precheck_suite(
    name: str,
    file: str,
    field: str | None,
    description: str,
    message: str,
    row: int | None = None,
    column: str = "ok",
) -> SuiteSpec:
    """A one-row suite for a problem found before any table existed (a parse error, a matrix
    that is not 2-D), so it is reported, stored and rendered like every other failure.

    The table has ``row``, ``field``, ``error`` and ``<column> = False``; the expectation
    is ``<column> in {True}``, which fails with the error message as the offending value.
    """
    frame = pd.DataFrame(
        {
            frames.ROW: pd.Series([row], dtype=object),
            "field": pd.Series([field], dtype=object),
            "error": pd.Series([message], dtype=object),
            column: pd.Series([False], dtype=bool),
        }
    )
    check = ExpectationSpec(
        "ExpectColumnValuesToBeInSet",
        {"column": column, "value_set": [True]},
        description,
        field,
        value_columns=("error",),
        quote=False,
    )
    return SuiteSpec(name, TableSource(file, (row or 0,), {}), frame, (check,))
