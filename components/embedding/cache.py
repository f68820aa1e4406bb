"""Content-addressed, append-only on-disk cache of embedding vectors.

Layout (format v1)::

    <cache_dir>/v1/<namespace id>/namespace.json   what the vectors are, verified dimension
    <cache_dir>/v1/<namespace id>/seg-<sha>.npz    one finished batch: keys + vectors
    <cache_dir>/v1/<namespace id>/pack-<sha>.npz   many batches merged by compact()
    <cache_dir>/v1/<namespace id>/quarantine/      files set aside for a wrong dimension

A *namespace* is everything that determines a vector other than the text: provider, model,
requested dimensions, normalisation, task type (where the provider has one) and an optional
tag. Inside it a vector is keyed by the sha256 of the exact string sent (prefix and
truncation included). Each file is written to a temporary name, fsync-ed and renamed with
``os.replace``, so a crash or ``kill -9`` leaves either the whole batch or nothing; finished
batches are never lost and never requested again. Files are immutable and named by content,
so several processes (shards on a cluster) can share one cache directory, and ``dvc add``
stores unchanged files only once across versions.

All vectors of a namespace have one dimension. The expected one comes from a trusted source
(see :mod:`components.embedding.dimensions`; once verified it is recorded in
``namespace.json``) or, while none is known, from the majority of the batch files. Files of
any other dimension (a misbehaving server's batch cached by an older version, or two
processes that disagreed) are repaired when the namespace is opened or refreshed: they are
moved into ``quarantine/`` (never deleted; a warning names the folder) and their texts count
as missing, so the next run requests them again. :class:`CacheCorruptError` is only for files
that cannot be read.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.atomic import atomic_write

from .dimensions import ExpectedDimension

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KEY_DTYPE = np.dtype("S32")
#: Where files of a wrong dimension are moved, inside the namespace directory.
QUARANTINE_DIR = "quarantine"


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
        expected: the dimension the vectors must have, if known (default: the namespace's
            requested ``dimensions``, else the one recorded as verified in
            ``namespace.json``, else the majority of the files).

    Attributes:
        dim: the dimension of the vectors served (``None`` while empty and none expected).
    """

    def __init__(
        self, root: str | Path, namespace: Namespace, expected: ExpectedDimension | None = None
    ) -> None:
        self.namespace = namespace
        self.dir = Path(root) / f"v{FORMAT_VERSION}" / namespace.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = self.dir / QUARANTINE_DIR
        self._lock = threading.RLock()
        self._files: list[str] = []
        self._known: set[str] = set()
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.dim: int | None = None
        if expected is None and namespace.dimensions is not None:
            expected = ExpectedDimension(namespace.dimensions, "the requested dimensions")
        self._expected = expected
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

    @property
    def expected_dim(self) -> ExpectedDimension | None:
        """The dimension this namespace's vectors must have, if known (given or recorded)."""
        with self._lock:
            return self._expected or self._recorded_dimension()

    def _recorded_dimension(self) -> ExpectedDimension | None:
        """The verified dimension recorded in ``namespace.json`` (by any process)."""
        try:
            data = json.loads((self.dir / "namespace.json").read_text())
        except (OSError, ValueError):
            return None
        value = data.get("verified_dimension") if isinstance(data, dict) else None
        if not isinstance(value, int) or value <= 0:
            return None
        source = f"verified for this cache namespace by {data.get('verified_by') or 'a run'}"
        return ExpectedDimension(value, source)

    def trust(self, expected: ExpectedDimension) -> None:
        """Make ``expected`` this namespace's dimension: record it in ``namespace.json`` (if
        verified) and quarantine every file of another dimension (their texts count as
        missing from now on)."""
        with self._lock:
            recorded = self._recorded_dimension()
            if expected.verified and (recorded is None or recorded.value != expected.value):
                self._record(expected)
            self._expected = expected
            self.refresh()  # quarantines what disagrees

    def _record(self, expected: ExpectedDimension) -> None:
        path = self.dir / "namespace.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {"format": FORMAT_VERSION, **asdict(self.namespace)}
        data.update(verified_dimension=expected.value, verified_by=expected.source)
        payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(path, lambda h: h.write(payload))

    def refresh(self) -> int:
        """Index files written since the last scan (by this or another process), setting
        aside files whose dimension disagrees with the namespace's (see the module doc).

        Returns:
            The number of newly indexed files.
        """
        with self._lock:
            if self._expected is None:
                self._expected = self._recorded_dimension()
            names = sorted(
                n
                for n in os.listdir(self.dir)
                if n.endswith(".npz") and n.startswith(("seg-", "pack-"))
            )
            found: list[tuple[str, np.ndarray, int]] = []
            for name in names:
                if name in self._known:
                    continue
                try:
                    keys, dim = self._read_keys(self.dir / name)
                except FileNotFoundError:
                    continue  # compacted away by another process meanwhile
                found.append((name, keys, dim))
            reference = self._reference(found)
            if reference is not None:
                if self.dim is not None and self.dim != reference.value:
                    self._quarantine(list(self._files), self.dim, reference)
                    self._reset_index()
                wrong: dict[int, list[str]] = {}
                for name, _, dim in found:
                    if dim != reference.value:
                        wrong.setdefault(dim, []).append(name)
                for dim, names_of_dim in sorted(wrong.items()):
                    self._quarantine(names_of_dim, dim, reference)
                found = [entry for entry in found if entry[2] == reference.value]
            for name, keys, dim in found:
                self.dim = dim
                self._add(name, keys)
            return len(found)

    def _reference(self, found: list[tuple[str, np.ndarray, int]]) -> ExpectedDimension | None:
        """The dimension files must have: the expected one, else the majority of files
        (indexed and new; ties go to the dimension with more vectors)."""
        if self._expected is not None:
            return self._expected
        files: Counter[int] = Counter(dim for _, _, dim in found)
        vectors: Counter[int] = Counter()
        for _, keys, dim in found:
            vectors[dim] += len(keys)
        if self.dim is not None:
            files[self.dim] += len(self._files)
            vectors[self.dim] += sum(len(part[0]) for part in self._parts)
        if len(files) <= 1:
            return None  # empty or consistent: nothing to decide
        dim = max(files, key=lambda d: (files[d], vectors[d], d))
        tally = ", ".join(f"{files[d]} of dimension {d}" for d in sorted(files))
        return ExpectedDimension(dim, f"the majority of its batch files: {tally}", verified=False)

    def _quarantine(self, names: list[str], dim: int, expected: ExpectedDimension) -> None:
        """Move files aside (not deleted) so that their texts are requested again."""
        if not names:
            return
        self.quarantine_dir.mkdir(exist_ok=True)
        moved = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # another process got there first
                os.replace(self.dir / name, self.quarantine_dir / name)
                moved += 1
        if not moved:
            return
        log.warning(
            "cache %s: %d file(s) hold vectors of dimension %d but the namespace's dimension "
            "is %d (%s); moved them to %s, their texts will be requested again",
            self.dir,
            moved,
            dim,
            expected.value,
            expected.source,
            self.quarantine_dir,
        )

    def _add(self, name: str, keys: np.ndarray) -> None:
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
        self._sorted = None

    def _reset_index(self) -> None:
        self._files, self._known, self._parts = [], set(), []
        self._sorted, self.dim = None, None

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
            self._reset_index()
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
            expected = self._expected.value if self._expected is not None else self.dim
            if expected is not None and vectors.shape[1] != expected:
                raise ValueError(
                    f"put: vectors of dimension {vectors.shape[1]} into cache "
                    f"namespace {self.dir} holding dimension {expected}"
                )
        raw = karr.view(np.uint8).reshape(-1, 32)
        name = f"seg-{hashlib.sha256(raw.tobytes()).hexdigest()[:32]}.npz"
        path = self.dir / name
        if not path.exists():
            atomic_write(path, lambda h: np.savez(h, keys=raw, vectors=vectors))
        with self._lock:
            if name not in self._known:
                self.dim = vectors.shape[1]
                self._add(name, karr.copy())
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
