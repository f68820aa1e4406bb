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

from components.lazy import lazy_exports

# Names are imported on first use (components/lazy.py): importing one module of the
# package does not load the others.
_EXPORTS = {
    "ValidationConfig": "config",
    "DataValidationError": "report",
    "ExpectedIds": "suites",
    "ExpectationOutcome": "report",
    "OffendingRow": "report",
    "SuiteResult": "report",
    "ValidationReport": "report",
    "validate_dataset": "runner",
    "validate_embeddings": "runner",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
