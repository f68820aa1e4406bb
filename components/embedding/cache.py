"""Content-addressed, append-only on-disk cache of embedding vectors.

Layout (format v1)::

    <cache_dir>/v1/<namespace id>/namespace.json   what the vectors are (no secrets)
    <cache_dir>/v1/<namespace id>/seg-<sha>.npz    one finished batch: keys + vectors
    <cache_dir>/v1/<namespace id>/pack-<sha>.npz   many batches merged by compact()

A *namespace* is everything that determines a vector other than the text: provider, model,
requested dimensions, normalisation, task type (where the provider has one) and an optional
tag. Inside it a vector is keyed by the sha256 of the exact string sent (prefix and
truncation included). Each file is written to a temporary name, fsync-ed and renamed with
``os.replace``, so a crash or ``kill -9`` leaves either the whole batch or nothing; finished
batches are never lost and never requested again. Files are immutable and named by content,
so several processes (shards on a cluster) can share one cache directory, and ``dvc add``
stores unchanged files only once across versions.

Example:
    >>> ns = Namespace(provider="openai", model="text-embedding-3-small", dimensions=256,
    ...                normalize=True, task=None)
    >>> cache = EmbeddingCache("/tmp/emb-cache", ns)  # doctest: +SKIP
    >>> cache.put([text_key("hello")], vectors)       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.atomic import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KEY_DTYPE = np.dtype("S32")


@dataclass(frozen=True)
class Namespace:
    """What, besides the text, determines a cached vector."""

    provider: str
    model: str
    dimensions: int | None
    normalize: bool
    task: str | None
    tag: str = ""

    @property
    def id(self) -> str:
        """Directory name: readable prefix + hash of all fields."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model)[-48:].strip("_") or "model"
        return f"{self.provider}-{slug}-{digest[:16]}"


def keys_array(keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """32-byte digests as a numpy ``S32`` array (compared as fixed 32-byte strings)."""
    if isinstance(keys, np.ndarray) and keys.dtype == KEY_DTYPE:
        return keys
    return np.array(list(keys), dtype=KEY_DTYPE)


class CacheCorruptError(RuntimeError):
    """A cache file cannot be read; the message names it and says what to do."""


class EmbeddingCache:
    """Vectors of one namespace, looked up by text key.

    Thread-safe within a process; safe across processes sharing the directory (files are
    immutable and written atomically; :meth:`refresh` picks up other processes' files).

    Args:
        root: the cache directory (``EmbeddingConfig.cache_dir``).
        namespace: what the vectors are.
    """

    def __init__(self, root: str | Path, namespace: Namespace) -> None:
        self.namespace = namespace
        self.dir = Path(root) / f"v{FORMAT_VERSION}" / namespace.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._files: list[str] = []
        self._known: set[str] = set()
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.dim: int | None = None
        self._write_namespace()
        self.refresh()

    # --- index ---------------------------------------------------------------------------
    def _write_namespace(self) -> None:
        path = self.dir / "namespace.json"
        if path.exists():
            return
        data = {"format": FORMAT_VERSION, **asdict(self.namespace)}
        payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(path, lambda h: h.write(payload))

    def refresh(self) -> int:
        """Index files written since the last scan (by this or another process).

        Returns:
            The number of newly indexed files.
        """
        with self._lock:
            names = sorted(
                n
                for n in os.listdir(self.dir)
                if n.endswith(".npz") and n.startswith(("seg-", "pack-"))
            )
            new = [n for n in names if n not in self._known]
            for name in new:
                try:
                    keys, dim = self._read_keys(self.dir / name)
                except FileNotFoundError:
                    continue  # compacted away by another process meanwhile
                self._check_dim(dim, name)
                file_id = len(self._files)
                self._files.append(name)
                self._known.add(name)
                self._parts.append(
                    (
                        keys,
                        np.full(len(keys), file_id, dtype=np.int32),
                        np.arange(len(keys), dtype=np.int64),
                    )
                )
            if new:
                self._sorted = None
            return len(new)

    def _check_dim(self, dim: int, name: str) -> None:
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise CacheCorruptError(
                f"{self.dir / name}: vectors have dimension {dim} but the namespace already "
                f"holds dimension {self.dim}; delete {self.dir} to rebuild this namespace"
            )

    def _read_keys(self, path: Path) -> tuple[np.ndarray, int]:
        """The keys of a file and its vector dimension, without reading the vectors."""
        try:
            with zipfile.ZipFile(path) as archive:
                with archive.open("keys.npy") as handle:
                    raw = np.lib.format.read_array(handle)
                with archive.open("vectors.npy") as handle:
                    version = np.lib.format.read_magic(handle)
                    reader = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape = reader(handle)[0]
            dim = int(shape[1])
            if raw.shape != (shape[0], 32):
                raise ValueError(f"{raw.shape[0]} keys for {shape[0]} vectors")
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile, EOFError) as exc:
            raise CacheCorruptError(
                f"{path}: unreadable cache file ({exc}); delete it and "
                "re-run (only its texts will be requested again)"
            ) from exc
        return np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1).view(KEY_DTYPE), dim

    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._sorted is None:
                if self._parts:
                    keys = np.concatenate([p[0] for p in self._parts])
                    files = np.concatenate([p[1] for p in self._parts])
                    rows = np.concatenate([p[2] for p in self._parts])
                    order = np.argsort(keys, kind="stable")
                    self._sorted = (keys[order], files[order], rows[order])
                else:
                    empty = np.zeros(0, dtype=KEY_DTYPE)
                    self._sorted = (empty, np.zeros(0, np.int32), np.zeros(0, np.int64))
            return self._sorted

    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        skeys, sfiles, srows = self._index()
        if len(skeys) == 0 or len(keys) == 0:
            return (
                np.zeros(len(keys), bool),
                np.zeros(len(keys), np.int32),
                np.zeros(len(keys), np.int64),
            )
        pos = np.clip(np.searchsorted(skeys, keys), 0, len(skeys) - 1)
        found = skeys[pos] == keys
        return found, sfiles[pos], srows[pos]

    def __len__(self) -> int:
        skeys = self._index()[0]
        return int(len(np.unique(skeys))) if len(skeys) else 0

    # --- public API --------------------------------------------------------------------------
    def contains(self, keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
        """Boolean mask: which keys have a cached vector."""
        return self._locate(keys_array(keys))[0]

    def get(self, keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
        """Vectors for ``keys`` (float32 [n, d]); raises KeyError naming how many are missing."""
        karr = keys_array(keys)
        for attempt in range(2):
            found, files, rows = self._locate(karr)
            if not found.all():
                raise KeyError(
                    f"{int((~found).sum())} of {len(karr)} texts are not in the cache {self.dir}"
                )
            if len(karr) == 0:
                return np.zeros((0, self.dim or 0), dtype=np.float32)
            out = np.empty((len(karr), self.dim or 0), dtype=np.float32)
            try:
                for file_id in np.unique(files):
                    mask = files == file_id
                    with np.load(self.dir / self._files[int(file_id)]) as data:
                        out[mask] = data["vectors"][rows[mask]]
                return out
            except FileNotFoundError:
                if attempt:
                    raise
                self._forget_missing()  # another process compacted; re-index and retry
        raise AssertionError("unreachable")

    def _forget_missing(self) -> None:
        with self._lock:
            self._files, self._known, self._parts = [], set(), []
            self._sorted, self.dim = None, None
        self.refresh()

    def put(self, keys: Sequence[bytes] | np.ndarray, vectors: np.ndarray) -> Path:
        """Store one finished batch atomically; returns the file written.

        Raises:
            ValueError: shapes disagree, or the dimension differs from the namespace's.
        """
        karr = keys_array(keys)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(karr):
            raise ValueError(f"put: {len(karr)} keys but vectors of shape {vectors.shape}")
        with self._lock:
            if self.dim is not None and vectors.shape[1] != self.dim:
                raise ValueError(
                    f"put: vectors of dimension {vectors.shape[1]} into cache "
                    f"namespace {self.dir} holding dimension {self.dim}"
                )
        raw = karr.view(np.uint8).reshape(-1, 32)
        name = f"seg-{hashlib.sha256(raw.tobytes()).hexdigest()[:32]}.npz"
        path = self.dir / name
        if not path.exists():
            atomic_write(path, lambda h: np.savez(h, keys=raw, vectors=vectors))
        with self._lock:
            if name not in self._known:
                self._check_dim(vectors.shape[1], name)
                file_id = len(self._files)
                self._files.append(name)
                self._known.add(name)
                self._parts.append(
                    (
                        karr.copy(),
                        np.full(len(karr), file_id, np.int32),
                        np.arange(len(karr), dtype=np.int64),
                    )
                )
                self._sorted = None
        return path

    def segment_count(self) -> int:
        """Number of un-compacted batch files."""
        with self._lock:
            return sum(1 for n in self._files if n.startswith("seg-"))

    def compact(self, min_segments: int = 64, stale_tmp_s: float = 3600.0) -> Path | None:
        """Merge all batch files into one pack when there are at least ``min_segments``.

        Call it when no other process is writing to this namespace (e.g. after all shards
        finished). A crash midway leaves duplicates, never a loss. Also removes temporary
        files older than ``stale_tmp_s`` left by killed runs.

        Returns:
            The pack written, or None.
        """
        now = time.time()
        for tmp in self.dir.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > stale_tmp_s:
                    tmp.unlink()
        with self._lock:
            self.refresh()
            segments = [n for n in self._files if n.startswith("seg-")]
            if len(segments) < max(1, min_segments):
                return None
            keys_list, vec_list = [], []
            for name in segments:
                with np.load(self.dir / name) as data:
                    keys_list.append(np.ascontiguousarray(data["keys"], np.uint8))
                    vec_list.append(data["vectors"])
            raw = np.concatenate(keys_list)
            vectors = np.concatenate(vec_list)
            _, first = np.unique(raw.reshape(-1).view(KEY_DTYPE), return_index=True)
            raw, vectors = raw[np.sort(first)], vectors[np.sort(first)]
            pack = self.dir / f"pack-{hashlib.sha256(raw.tobytes()).hexdigest()[:32]}.npz"
            atomic_write(pack, lambda h: np.savez(h, keys=raw, vectors=vectors))
            for name in segments:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()
            self._forget_missing()
            log.info(
                "cache %s: compacted %d batch files into %s", self.dir, len(segments), pack.name
            )
            return pack
