"""Atomic file and directory writes: nothing half-written ever looks finished.

Files are written to a temporary sibling, flushed to disk and renamed over the target;
directories are assembled under a hidden staging name and renamed into place. Every module
that publishes outputs (adaptors, embeddings, the vector cache, reports, stage outputs)
goes through these helpers.

Example:
    >>> import tempfile, pathlib
    >>> from components.atomic import atomic_write_text, staged_directory
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with staged_directory(root / "out") as staging:
    ...     atomic_write_text(staging / "a.txt", "done")
    >>> (root / "out" / "a.txt").read_text()
    'done'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via ``write(handle)`` to a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_path(target: str | Path) -> None:
    """Delete a file or directory if present."""
    target = Path(target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


@contextlib.contextmanager
def staged_directory(target: str | Path, *, clear_first: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``target`` when the block succeeds.

    Args:
        target: the directory to publish.
        clear_first: delete ``target`` before the block runs, so that after a failure no
            stale earlier output remains for a later step to consume (pipeline stages).
            Otherwise a failure leaves ``target`` as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if clear_first:
        remove_path(target)
    token = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.partial-{token}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = target.parent / f".{target.name}.old-{token}"
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    remove_path(retired)
