"""Pipeline stage one: data validation with Great Expectations 1.x.

Suites for the corpus, the queries, each qrels split and, after extraction, the embeddings.
A failed suite stops the run before training: ``report.raise_for_failures()`` raises
:class:`DataValidationError` whose message names each failing expectation, its counts and
sample offending rows (``file, row N, field 'x': value``). GX results, ``summary.txt`` and
Data Docs HTML are written atomically to an artifact directory.

Example:
    >>> from components.validation import ValidationConfig, validate_dataset
    >>> report = validate_dataset("data/scifact", ValidationConfig())  # doctest: +SKIP
    >>> report.raise_for_failures()  # doctest: +SKIP

``great_expectations`` is imported lazily, only when suites run.
"""

from components.validation.config import ValidationConfig
from components.validation.report import (
    DataValidationError,
    ExpectationOutcome,
    OffendingRow,
    SuiteResult,
    ValidationReport,
)
from components.validation.runner import validate_dataset, validate_embeddings

__all__ = [
    "DataValidationError",
    "ExpectationOutcome",
    "OffendingRow",
    "SuiteResult",
    "ValidationConfig",
    "ValidationReport",
    "validate_dataset",
    "validate_embeddings",
]
