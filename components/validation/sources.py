"""Where each table row comes from: the file, its 1-based line number, the file's field names.

The loader (:mod:`components.data`) skips blank lines, so a frame position is not always a
line number. This module rescans the files (cheap next to GX) to map every frame row back to
its line, so failures name the row the user sees in an editor.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

from components.data import last_json_key

_TEXT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


@dataclass(frozen=True)
class TableSource:
    """A table's file and how its frame rows map back to it.

    Attributes:
        file: path shown to the user.
        rows: 1-based row number of each frame row, in frame order.
        fields: frame column -> field name as written in the file.
    """

    file: str
    rows: tuple[int, ...]
    fields: dict[str, str]

    def field(self, column: str) -> str:
        return self.fields.get(column, column)


def find_table_file(root: Path, stem: str) -> Path | None:
    """``root/stem.{jsonl,jsonl.gz,parquet}`` as the loader picks it, or None."""
    for suffix in _TEXT_SUFFIXES:
        candidate = root / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline=None)
    return open(path, encoding="utf-8", newline=None)  # noqa: SIM115 - caller closes


def _jsonl_rows(path: Path) -> tuple[list[int], str]:
    """Line numbers of non-blank lines, and the id field of the first record."""
    rows: list[int] = []
    id_field = "id"
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if not rows:
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    first = {}
                if isinstance(first, dict) and "_id" in first and "id" not in first:
                    id_field = "_id"
            rows.append(number)
    return rows, id_field


def _parquet_id_field(path: Path) -> str:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    return "_id" if "_id" in names and "id" not in names else "id"


def text_table_source(path: Path | None, label: str, n_rows: int) -> TableSource:
    """Source of a corpus/queries frame; positional rows when there is no file to scan."""
    if path is None:
        return TableSource(label, tuple(range(1, n_rows + 1)), {})
    if path.suffix == ".parquet":
        rows = list(range(1, n_rows + 1))
        id_field = _parquet_id_field(path)
    else:
        rows, id_field = _jsonl_rows(path)
    if len(rows) != n_rows:  # the file changed since loading; fall back to positions
        rows = list(range(1, n_rows + 1))
    return TableSource(str(path), tuple(rows), {"id": id_field})


QRELS_FIELDS = {"query_id": "query-id", "doc_id": "corpus-id", "score": "score"}


def qrels_source(path: Path | None, label: str, n_rows: int) -> TableSource:
    """Source of a qrels frame: TSV line numbers (the header is line 1)."""
    rows: list[int] = []
    if path is not None and path.exists():
        with _open_text(path) as handle:
            lines = handle.read().splitlines()  # as components.data.read_qrels splits
        rows = [n for n, line in enumerate(lines[1:], start=2) if line.strip()]
    if len(rows) != n_rows:
        rows = list(range(2, n_rows + 2))
    return TableSource(str(path) if path is not None else label, tuple(rows), dict(QRELS_FIELDS))


def json_error_field(path: Path, row: int) -> str | None:
    """The field whose value holds the syntax error on line ``row`` of a JSONL file.

    The loader reports a malformed line without a field; this re-parses that line and
    returns the last key opened before the error position (None if there is none).
    """
    if path.suffix not in (".jsonl", ".gz") or not path.is_file():
        return None
    try:
        with _open_text(path) as handle:
            line = next(
                (text for number, text in enumerate(handle, start=1) if number == row), None
            )
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None
    if line is None:
        return None
    try:
        json.loads(line)
    except json.JSONDecodeError as exc:
        return last_json_key(line[: exc.pos])
    return None
