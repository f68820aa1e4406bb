"""The validation report: per-suite outcomes, a human summary and the error it raises.

The report is plain data (frozen dataclasses) built from the Great Expectations results, so
callers and tests need no GX import to read it. ``summary()`` names every failing
expectation with its counts and sample offending rows as ``file, row N, field 'x': value``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_VALUE_CHARS = 80


class DataValidationError(ValueError):
    """Input data failed validation; the message is the report's summary."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.summary())


def format_value(value: Any, max_chars: int = _VALUE_CHARS) -> str:
    """A short, unambiguous rendering of an offending value (strings quoted, truncated)."""
    if isinstance(value, str):
        text = repr(value)
        if len(text) > max_chars:
            text = repr(value[: max_chars - 5])[:-1] + "...'"
        return text
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "(" + ", ".join(format_value(v, max_chars // 2) for v in value) + ")"
    return str(value)


@dataclass(frozen=True)
class OffendingRow:
    """One row that broke an expectation.

    Attributes:
        file: the file (or matrix) the row comes from.
        row: 1-based row: the line number in JSONL/TSV files (a TSV header is line 1), the
            record number in Parquet files, ``matrix[row - 1]`` for embeddings.
        field: the field as named in the file (e.g. ``_id``, ``corpus-id``, ``score``).
        value: the offending value (or a description of it).
        context: other identifying fields of the row, e.g. ``(("query-id", "q1"),)``.
        show_length: also print the value's length (length-bound failures).
        quote: quote string values; False for ready-made messages (parse errors).
    """

    file: str
    row: int | None
    field: str | None
    value: Any
    context: tuple[tuple[str, str], ...] = ()
    show_length: bool = False
    quote: bool = True

    def describe(self) -> str:
        """``file, row N, field 'x': value`` (parts that are unknown are left out)."""
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.field is not None:
            where += f", field '{self.field}'"
        shown = format_value(self.value) if self.quote else str(self.value)
        text = f"{where}: {shown}"
        if self.show_length and isinstance(self.value, str):
            text += f" ({len(self.value)} chars)"
        if self.context:
            text += " [" + ", ".join(f"{k}={v!r}" for k, v in self.context) + "]"
        return text


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, reduced to what a user needs to fix the data."""

    suite: str
    expectation_type: str
    column: str | None
    description: str
    success: bool
    file: str
    field: str | None = None
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    samples: tuple[OffendingRow, ...] = ()
    exception: str | None = None

    def headline(self) -> str:
        """One line: type, column, description and counts."""
        target = f" on '{self.column}'" if self.column else ""
        text = f"{self.expectation_type}{target}"
        if self.description:
            text += f" ({self.description})"
        if self.exception:
            return f"{text}: raised {self.exception}"
        if self.unexpected_count is not None and self.element_count is not None:
            percent = self.unexpected_percent or 0.0
            text += (
                f": {self.unexpected_count} of {self.element_count} rows unexpected "
                f"({percent:.2f}%)"
            )
        elif self.observed_value is not None:
            text += f": observed {format_value(self.observed_value)}"
        return text


@dataclass(frozen=True)
class SuiteResult:
    """One expectation suite run on one table (a file or an embedding matrix)."""

    name: str
    file: str
    row_count: int
    outcomes: tuple[ExpectationOutcome, ...]
    results_file: str | None = None

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating a dataset or a set of embeddings.

    Attributes:
        subject: what was validated, e.g. ``dataset 'scifact'``.
        suites: one result per expectation suite (a ``parse`` suite when loading failed).
        artifacts_dir: where GX results, ``summary.txt`` and Data Docs were written.
        duration_s: wall time of the validation.
    """

    subject: str
    suites: tuple[SuiteResult, ...]
    artifacts_dir: Path | None = None
    duration_s: float = 0.0
    sample_rows: int = 5
    notes: tuple[str, ...] = field(default=())

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for s in self.suites for o in s.failures)

    def suite(self, name: str) -> SuiteResult:
        """The result of suite ``name``; a KeyError lists the suites that ran."""
        for result in self.suites:
            if result.name == name:
                return result
        raise KeyError(f"no suite {name!r}; ran: {[s.name for s in self.suites]}")

    def summary(self) -> str:
        """A human-readable report: every failing expectation, counts, sample rows."""
        total = sum(len(s.outcomes) for s in self.suites)
        failed_suites = [s for s in self.suites if not s.success]
        lines: list[str] = []
        if self.success:
            sizes = ", ".join(f"{s.name}: {s.row_count} rows" for s in self.suites)
            lines.append(
                f"Data validation passed for {self.subject}: {len(self.suites)} "
                f"suites, {total} expectations ({sizes})."
            )
        else:
            lines.append(
                f"Data validation FAILED for {self.subject}: {len(failed_suites)} of "
                f"{len(self.suites)} suites failed, {len(self.failures)} of {total} "
                "expectations failed."
            )
        for suite in failed_suites:
            lines.append("")
            lines.append(
                f"[{suite.name}] {suite.file}: {len(suite.failures)} of "
                f"{len(suite.outcomes)} expectations failed"
            )
            for outcome in suite.failures:
                lines.append(f"  - {outcome.headline()}")
                shown = outcome.samples[: self.sample_rows]
                for sample in shown:
                    lines.append(f"      {sample.describe()}")
                more = (outcome.unexpected_count or len(outcome.samples)) - len(shown)
                if shown and more > 0:
                    lines.append(f"      ... and {more} more")
        lines.extend(self.notes)
        if self.artifacts_dir is not None:
            lines.append("")
            lines.append(f"Validation artifacts: {self.artifacts_dir}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise :class:`DataValidationError` (message = summary) when any suite failed."""
        if not self.success:
            raise DataValidationError(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (used for ``report.json``)."""
        return {
            "subject": self.subject,
            "success": self.success,
            "duration_s": round(self.duration_s, 3),
            "artifacts_dir": str(self.artifacts_dir) if self.artifacts_dir else None,
            "suites": [
                {
                    "name": s.name,
                    "file": s.file,
                    "row_count": s.row_count,
                    "success": s.success,
                    "results_file": s.results_file,
                    "outcomes": [_jsonable(asdict(o)) for o in s.outcomes],
                }
                for s in self.suites
            ],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
