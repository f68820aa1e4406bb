"""The on-disk embedding matrices the training stage reads.

``out_dir`` holds:

* ``corpus.npy`` / ``queries.npy``: float32 ``[n, d]``, rows in the dataset's row order;
* ``corpus_ids.json`` / ``queries_ids.json``: the ids of those rows;
* ``meta.json``: provider, model, dimensions, normalisation, dataset fingerprint, counts,
  ``created_at`` (never a secret), written **last**: a directory without it is unfinished.

Every file is written to a temporary name and moved into place with ``os.replace``; an old
``meta.json`` is removed first, so a crash midway never leaves a directory that looks complete
but mixes old and new files. :func:`load_embeddings` checks shapes, dtypes, finiteness and id
counts and names the offending file.

Example:
    >>> art = load_embeddings("runs/embeddings")  # doctest: +SKIP
    >>> art.corpus.shape, len(art.corpus_ids)  # doctest: +SKIP
    ((5183, 384), 5183)
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from components.atomic import atomic_write

FILES = ("corpus.npy", "queries.npy", "corpus_ids.json", "queries_ids.json", "meta.json")


class EmbeddingStoreError(ValueError):
    """An embeddings directory is missing a file or holds inconsistent data (names the file)."""


@dataclass(frozen=True)
class EmbeddingArtifacts:
    """Matrices, ids and metadata of one embeddings directory.

    Attributes:
        out_dir: the directory.
        corpus_ids / query_ids: row ids.
        corpus / queries: float32 matrices ``[n, d]`` (same d).
        meta: the parsed ``meta.json``.
    """

    out_dir: Path
    corpus_ids: list[str]
    corpus: np.ndarray = field(repr=False)
    query_ids: list[str]
    queries: np.ndarray = field(repr=False)
    meta: dict[str, Any]

    @property
    def dimensions(self) -> int:
        return int(self.corpus.shape[1])

    def as_tuple(self) -> tuple[list[str], np.ndarray, list[str], np.ndarray, dict[str, Any]]:
        """``(corpus_ids, corpus, query_ids, queries, meta)``."""
        return self.corpus_ids, self.corpus, self.query_ids, self.queries, self.meta


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _check_matrix(
    path: Path, matrix: np.ndarray, ids: list[str], what: str, dim: int | None = None
) -> None:
    if matrix.dtype != np.float32 or matrix.ndim != 2:
        raise EmbeddingStoreError(
            f"{path}: expected a float32 2-d matrix, got {matrix.dtype} with shape {matrix.shape}"
        )
    if matrix.shape[0] != len(ids):
        raise EmbeddingStoreError(f"{path}: {matrix.shape[0]} rows but {len(ids)} {what} ids")
    if dim is not None and matrix.shape[1] != dim:
        raise EmbeddingStoreError(
            f"{path}: dimension {matrix.shape[1]}, expected {dim} (the corpus dimension)"
        )
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix).all(axis=1)).sum())
        raise EmbeddingStoreError(f"{path}: {bad} row(s) contain NaN or infinite values")


def save_embeddings(
    out_dir: str | Path,
    *,
    corpus_ids: list[str],
    corpus: np.ndarray,
    query_ids: list[str],
    queries: np.ndarray,
    meta: dict[str, Any],
) -> EmbeddingArtifacts:
    """Write matrices, ids and ``meta.json`` (last) atomically; returns what was written.

    ``meta`` gets ``dimensions``, ``n_corpus``, ``n_queries`` and ``created_at`` filled in.

    Raises:
        EmbeddingStoreError: shapes, dtypes or id counts disagree (nothing is written).
    """
    out = Path(out_dir)
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.size == 0:
        queries = queries.reshape(0, corpus.shape[1])
    corpus_ids, query_ids = [str(i) for i in corpus_ids], [str(i) for i in query_ids]
    _check_matrix(out / "corpus.npy", corpus, corpus_ids, "corpus")
    _check_matrix(out / "queries.npy", queries, query_ids, "query", dim=corpus.shape[1])
    meta = {
        **meta,
        "dimensions": int(corpus.shape[1]),
        "n_corpus": len(corpus_ids),
        "n_queries": len(query_ids),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "meta.json").unlink()  # the directory is "unfinished" until rewritten
    atomic_write(out / "corpus.npy", lambda h: np.save(h, corpus))
    atomic_write(out / "queries.npy", lambda h: np.save(h, queries))
    atomic_write(out / "corpus_ids.json", lambda h: h.write(_json_bytes(corpus_ids)))
    atomic_write(out / "queries_ids.json", lambda h: h.write(_json_bytes(query_ids)))
    atomic_write(out / "meta.json", lambda h: h.write(_json_bytes(meta)))
    return EmbeddingArtifacts(out, corpus_ids, corpus, query_ids, queries, meta)


def _load_ids(path: Path) -> list[str]:
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbeddingStoreError(f"{path}: missing file") from None
    except ValueError as exc:
        raise EmbeddingStoreError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise EmbeddingStoreError(f"{path}: expected a JSON list of string ids")
    return ids


def _load_matrix(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise EmbeddingStoreError(f"{path}: missing file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise EmbeddingStoreError(f"{path}: unreadable .npy file ({exc})") from None


def load_embeddings(out_dir: str | Path, *, mmap: bool = False) -> EmbeddingArtifacts:
    """Read and validate an embeddings directory written by :func:`save_embeddings`.

    Args:
        out_dir: the directory.
        mmap: memory-map the matrices instead of reading them (large corpora).

    Raises:
        EmbeddingStoreError: missing/unfinished directory, or inconsistent files (the message
            names the file).
    """
    out = Path(out_dir)
    meta_path = out / "meta.json"
    if not meta_path.exists():
        raise EmbeddingStoreError(
            f"{meta_path}: missing; the embeddings in {out} are "
            "unfinished or absent; run the embed step"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EmbeddingStoreError(f"{meta_path}: invalid JSON ({exc})") from None
    corpus_ids = _load_ids(out / "corpus_ids.json")
    query_ids = _load_ids(out / "queries_ids.json")
    corpus = _load_matrix(out / "corpus.npy", mmap)
    queries = _load_matrix(out / "queries.npy", mmap)
    _check_matrix(out / "corpus.npy", corpus, corpus_ids, "corpus")
    _check_matrix(out / "queries.npy", queries, query_ids, "query", dim=corpus.shape[1])
    for name, count in (("n_corpus", len(corpus_ids)), ("n_queries", len(query_ids))):
        if meta.get(name) is not None and meta[name] != count:
            raise EmbeddingStoreError(
                f"{meta_path}: {name}={meta[name]} but the files hold {count} rows"
            )
    if meta.get("dimensions") is not None and meta["dimensions"] != corpus.shape[1]:
        raise EmbeddingStoreError(
            f"{meta_path}: dimensions={meta['dimensions']} but corpus.npy has {corpus.shape[1]}"
        )
    return EmbeddingArtifacts(out, corpus_ids, corpus, query_ids, queries, meta)
