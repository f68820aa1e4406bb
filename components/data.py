"""Retrieval datasets: loading BEIR-layout and plain user-format data into pandas.

A dataset is a corpus (``id``, ``title``, ``text``), queries (``id``, ``text``) and relevance
labels per split (``query_id``, ``doc_id``, ``score``). Two on-disk layouts are read:

* BEIR: ``corpus.jsonl[.gz]`` (``_id``, ``title``, ``text``), ``queries.jsonl[.gz]``
  (``_id``, ``text``) and ``qrels/<split>.tsv`` (header line ``query-id corpus-id score``,
  LF or CRLF line endings);
* user format: ``corpus.{jsonl,parquet}`` and ``queries.{jsonl,parquet}`` with ``id``,
  ``text`` and optional ``title``, plus the same ``qrels/<split>.tsv`` files.

Field types: ids are strings or integers (an integer becomes its decimal string; floats,
booleans and anything else are rejected, since an id ``1.0`` would never match a qrels id
``1``); ``text`` is a string and ``title`` a string, null or absent (a number in either is
rejected, not converted). Files are UTF-8 (a BOM is allowed).

Every error raised for bad input is a :class:`DataFormatError` naming the file, the row
(1-based line number for text files) and the field, so a user can fix it directly.

Example:
    >>> from components.data import load_dataset
    >>> ds = load_dataset("data/scifact")  # doctest: +SKIP
    >>> len(ds.corpus), sorted(ds.qrels)  # doctest: +SKIP
    (5183, ['test', 'train'])
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import reprlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CORPUS_COLUMNS = ["id", "title", "text"]
QUERY_COLUMNS = ["id", "text"]
QRELS_COLUMNS = ["query_id", "doc_id", "score"]
_QRELS_FIELDS = ("query-id", "corpus-id", "score")  # the TSV header


class DataFormatError(ValueError):
    """Bad input data; the message names the file, the row and the field."""

    def __init__(
        self, path: Path | str, message: str, row: int | None = None, field_name: str | None = None
    ) -> None:
        self.path = str(path)
        self.row = row
        self.field_name = field_name
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field_name is not None:
            where += f", field '{field_name}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RetrievalDataset:
    """A corpus, its queries and relevance labels per split (e.g. ``train``, ``test``)."""

    name: str
    corpus: pd.DataFrame
    queries: pd.DataFrame
    qrels: dict[str, pd.DataFrame] = field(default_factory=dict)

    def corpus_texts(self) -> list[str]:
        """Texts to embed for the corpus: ``title + " " + text`` (the BEIR convention)."""
        joined = self.corpus["title"].str.strip() + " " + self.corpus["text"].str.strip()
        return joined.str.strip().tolist()

    def query_texts(self) -> list[str]:
        return self.queries["text"].str.strip().tolist()

    def split(self, name: str) -> pd.DataFrame:
        """The relevance labels of one split; a clear error lists the splits that exist."""
        if name not in self.qrels:
            raise KeyError(
                f"dataset '{self.name}' has no qrels split '{name}'; "
                f"available: {sorted(self.qrels) or 'none'}"
            )
        return self.qrels[name]

    def fingerprint(self) -> str:
        """A deterministic sha256 of the dataset's content (row order and layout ignored)."""
        return dataset_fingerprint(self.corpus, self.queries, self.qrels)


def dataset_fingerprint(
    corpus: pd.DataFrame, queries: pd.DataFrame, qrels: dict[str, pd.DataFrame]
) -> str:
    """sha256 over the sorted, canonically serialised tables.

    Content-only: reordering rows, gzip vs plain files or BEIR vs user layout give the same
    fingerprint; any change to an id, a text, a title, a label or a split name changes it.
    """
    digest = hashlib.sha256()

    def feed(tag: str, frame: pd.DataFrame, columns: list[str], key: list[str]) -> None:
        digest.update(f"<{tag}>".encode())
        ordered = frame[columns].sort_values(key, kind="mergesort")
        for row in ordered.itertuples(index=False, name=None):
            digest.update(json.dumps(list(row), ensure_ascii=False).encode())
            digest.update(b"\n")

    feed("corpus", corpus, CORPUS_COLUMNS, ["id"])
    feed("queries", queries, QUERY_COLUMNS, ["id"])
    for split in sorted(qrels):
        frame = qrels[split].astype({"score": "int64"})
        feed(f"qrels:{split}", frame, QRELS_COLUMNS, ["query_id", "doc_id"])
    return digest.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline=None)
    return open(path, encoding="utf-8-sig", newline=None)  # noqa: SIM115 - caller closes


_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')


def last_json_key(fragment: str) -> str | None:
    """The last ``"key":`` in the start of a JSON line: the field a position there is in."""
    keys = _JSON_KEY.findall(fragment)
    return keys[-1] if keys else None


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes (gunzipped), split at LF, CRLF and CR as text mode does."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for chunk in handle:  # chunks end at LF, so a CRLF pair is never split
            yield from chunk.splitlines()


def _jsonl_field_at(line: bytes, offset: int) -> str | None:
    """The JSON field that byte ``offset`` of a line falls in (bytes before it are valid)."""
    return last_json_key(line[:offset].decode("utf-8"))


def _tsv_field_at(line: bytes, offset: int) -> str | None:
    """The qrels column that byte ``offset`` of a line falls in."""
    column = line[:offset].count(b"\t")
    return _QRELS_FIELDS[column] if column < len(_QRELS_FIELDS) else None


def _utf8_error(path: Path, field_at: Callable[[bytes, int], str | None]) -> DataFormatError:
    """The first non-UTF-8 byte as line, byte column and field (``field_at(line, offset)``).

    The decoder's own error gives an offset into a read buffer, which means nothing to a
    user; this rescans the file line by line, on the error path only. A UTF-8 sequence
    never contains a newline byte, so decoding line by line finds the same first error.
    """
    try:
        for line_number, line in enumerate(_raw_lines(path), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataFormatError(
                    path,
                    f"not valid UTF-8: byte 0x{line[exc.start]:02x} at byte column "
                    f"{exc.start + 1} ({exc.reason}); save the file as UTF-8",
                    row=line_number,
                    field_name=field_at(line, exc.start),
                )
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        return DataFormatError(path, f"unreadable file ({exc})")
    return DataFormatError(path, "not valid UTF-8; save the file as UTF-8")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed lines raise."""
    with _open_text(path) as handle:
        try:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(
                        path, f"malformed JSON: {exc.msg} (column {exc.colno})", row=line_number
                    ) from exc
                if not isinstance(record, dict):
                    raise DataFormatError(path, "expected a JSON object", row=line_number)
                yield line_number, record
        except UnicodeDecodeError as exc:
            raise _utf8_error(path, _jsonl_field_at) from exc
        except (gzip.BadGzipFile, EOFError) as exc:
            raise DataFormatError(path, f"unreadable file ({exc})") from exc


def _describe(value: object) -> str:
    """``int 42``: the JSON/Parquet type and a short repr of an offending value."""
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _as_id(path: Path, row: int, field_name: str, value: object) -> str:
    """An id as a string. Integers are accepted (BEIR ids are often numeric, and JSON or
    Parquet may store them as numbers) and become their decimal string; a float such as
    1.0 is rejected, because its string '1.0' would never match a qrels id '1'."""
    if value is None:
        raise DataFormatError(path, "missing value", row=row, field_name=field_name)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataFormatError(
        path,
        f"ids must be strings or integers, got {_describe(value)}",
        row=row,
        field_name=field_name,
    )


def _as_text(path: Path, row: int, field_name: str, value: object, required: bool) -> str:
    """A text or title: strings only. A number is rejected, not converted: it is almost
    always a wrongly typed column, and embedding '42' would hide that."""
    if value is None:
        if required:
            raise DataFormatError(path, "missing value", row=row, field_name=field_name)
        return ""
    if not isinstance(value, str):
        raise DataFormatError(
            path, f"expected a string, got {_describe(value)}", row=row, field_name=field_name
        )
    return value


def _parquet_records(path: Path) -> list[dict]:
    """The rows of a Parquet file as Python values.

    Read with pyarrow rather than pandas: pandas turns an integer column with nulls into
    float64 (1 -> 1.0), which would wrongly reject ids the file stores as integers.
    """
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types
        raise _unreadable_parquet(path, exc) from exc


def _unreadable_parquet(path: Path, exc: Exception) -> DataFormatError:
    return DataFormatError(path, f"unreadable Parquet file ({exc})")


def _read_records(path: Path, id_field: str, with_title: bool) -> pd.DataFrame:
    """Read a JSONL or Parquet table of texts into columns ``id, [title,] text``."""
    columns = CORPUS_COLUMNS if with_title else QUERY_COLUMNS
    rows: list[tuple[str, ...]] = []
    records: Iterator[tuple[int, dict]]
    if path.suffix == ".parquet":
        records = enumerate(_parquet_records(path), start=1)
    else:
        records = _iter_jsonl(path)
    for row, record in records:
        if id_field not in record:
            raise DataFormatError(path, "missing id", row=row, field_name=id_field)
        doc_id = _as_id(path, row, id_field, record[id_field])
        if "text" not in record:
            raise DataFormatError(path, "missing text", row=row, field_name="text")
        text = _as_text(path, row, "text", record["text"], required=True)
        if with_title:
            title = _as_text(path, row, "title", record.get("title"), required=False)
            rows.append((doc_id, title, text))
        else:
            rows.append((doc_id, text))
    frame = pd.DataFrame(rows, columns=columns, dtype="str")
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype="str") for c in columns})
    return frame


def read_qrels(path: Path) -> pd.DataFrame:
    """Read a BEIR qrels TSV (header line, tab-separated, LF or CRLF) into a frame."""
    rows: list[tuple[str, str, int]] = []
    try:
        with _open_text(path) as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, _tsv_field_at) from exc
    if not lines:
        raise DataFormatError(
            path, "empty file: expected a header 'query-id corpus-id score'", row=1
        )
    header = [cell.strip() for cell in lines[0].split("\t")]
    if header[:3] != ["query-id", "corpus-id", "score"]:
        raise DataFormatError(
            path, f"expected header 'query-id\\tcorpus-id\\tscore', got {lines[0]!r}", row=1
        )
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split("\t")]
        if len(cells) < 3:
            raise DataFormatError(
                path,
                f"expected 3 tab-separated fields, got {len(cells)}",
                row=line_number,
                field_name=_QRELS_FIELDS[len(cells)],
            )
        for name, cell in zip(_QRELS_FIELDS, cells[:3], strict=True):
            if not cell:
                raise DataFormatError(path, "empty value", row=line_number, field_name=name)
        try:
            score = int(cells[2])
        except ValueError:
            raise DataFormatError(
                path,
                f"score must be an integer, got {cells[2]!r}",
                row=line_number,
                field_name="score",
            ) from None
        rows.append((cells[0], cells[1], score))
    frame = pd.DataFrame(rows, columns=QRELS_COLUMNS)
    return frame.astype({"query_id": "str", "doc_id": "str", "score": "int64"})


def _find(directory: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        candidate = directory / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def load_dataset(
    directory: str | Path, name: str | None = None, splits: tuple[str, ...] | None = None
) -> RetrievalDataset:
    """Load a dataset directory in BEIR layout or the plain user format.

    Args:
        directory: folder holding ``corpus.*``, optionally ``queries.*`` and ``qrels/*.tsv``.
        name: the dataset's name; defaults to the folder name.
        splits: qrels splits to load; default every ``qrels/*.tsv``.

    Raises:
        DataFormatError: a file is missing, malformed, or has an empty/missing field.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataFormatError(root, "dataset directory not found")
    corpus_path = _find(root, "corpus", _SUFFIXES)
    if corpus_path is None:
        raise DataFormatError(
            root, "no corpus file (corpus.jsonl, corpus.jsonl.gz or corpus.parquet)"
        )
    # BEIR files use `_id`; the user format uses `id`. Sniff the first record.
    id_field = _id_field(corpus_path)
    corpus = _read_records(corpus_path, id_field, with_title=True)
    queries_path = _find(root, "queries", _SUFFIXES)
    if queries_path is not None:
        queries = _read_records(queries_path, _id_field(queries_path), with_title=False)
    else:
        queries = pd.DataFrame({c: pd.Series(dtype="str") for c in QUERY_COLUMNS})
    qrels: dict[str, pd.DataFrame] = {}
    qrels_dir = root / "qrels"
    if qrels_dir.is_dir():
        for path in sorted(qrels_dir.glob("*.tsv")):
            if splits is None or path.stem in splits:
                qrels[path.stem] = read_qrels(path)
    if splits is not None:
        missing = sorted(set(splits) - set(qrels))
        if missing:
            raise DataFormatError(qrels_dir, f"missing qrels split(s) {missing}")
    if queries_path is None:
        _require_no_labels(root, qrels)
    return RetrievalDataset(name=name or root.name, corpus=corpus, queries=queries, qrels=qrels)


def _require_no_labels(root: Path, qrels: dict[str, pd.DataFrame]) -> None:
    """Without a queries file, labels cannot resolve: say the file is missing, rather than
    letting every qrels row fail later as an unknown query id. A corpus alone (no labels)
    is a valid unsupervised-only dataset."""
    labelled = [split for split, frame in sorted(qrels.items()) if len(frame)]
    if labelled:
        raise DataFormatError(
            root,
            "no queries file (queries.jsonl, queries.jsonl.gz or queries.parquet), but "
            f"qrels/{labelled[0]}.tsv has relevance labels; add the queries file, or remove "
            "qrels/ for an unsupervised-only dataset",
        )


def _id_field(path: Path) -> str:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several unrelated types
            raise _unreadable_parquet(path, exc) from exc
        return "_id" if "_id" in names and "id" not in names else "id"
    for _, record in _iter_jsonl(path):
        return "_id" if "_id" in record and "id" not in record else "id"
    return "id"


def check_dataset(dataset: RetrievalDataset, root: str | Path = "") -> None:
    """Structural checks the engine relies on: ids unique and non-empty, qrels resolve.

    Great Expectations suites (pipeline stage one) report the same problems with counts and
    samples; this is the cheap guard the library applies to any caller's data.
    """
    base = Path(root) if root else Path(dataset.name)
    for table, frame in (("corpus", dataset.corpus), ("queries", dataset.queries)):
        if table == "corpus" and frame.empty:
            raise DataFormatError(base / "corpus", "empty corpus: at least one document is needed")
        ids = frame["id"]
        empty = ids.str.strip() == ""
        if empty.any():
            raise DataFormatError(
                base / table, "empty id", row=int(empty.idxmax()) + 1, field_name="id"
            )
        dup = ids.duplicated()
        if dup.any():
            position = int(dup.to_numpy().nonzero()[0][0])
            raise DataFormatError(
                base / table,
                f"duplicate id {ids.iloc[position]!r}",
                row=position + 1,
                field_name="id",
            )
    doc_ids = set(dataset.corpus["id"])
    query_ids = set(dataset.queries["id"])
    for split, frame in dataset.qrels.items():
        path = base / "qrels" / f"{split}.tsv"
        for position, (qid, did) in enumerate(zip(frame["query_id"], frame["doc_id"], strict=True)):
            # +2: the header is row 1 of the file.
            if qid not in query_ids:
                raise DataFormatError(
                    path, f"unknown query id {qid!r}", row=position + 2, field_name="query-id"
                )
            if did not in doc_ids:
                raise DataFormatError(
                    path, f"unknown corpus id {did!r}", row=position + 2, field_name="corpus-id"
                )
