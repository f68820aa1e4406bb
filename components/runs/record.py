"""Where a run lives and what it says about itself: ``.matryoshka/runs/<run id>/``.

======================  ===================================================================
path                    what
======================  ===================================================================
``run.json``            the record: status, owner process, heartbeat, the processes it
                        started, overrides, MLflow run, registered version, failure reason
``owner.lock``          held (``flock``) by the process running the flow for its whole life;
                        the kernel releases it when that process dies, even by ``kill -9``,
                        so "can I take it?" is the liveness test (no stale lock is possible)
``workspace/``          the isolated copy of the project the stages run in (see
                        :mod:`components.runs.workspace`)
``flow.log``            the full log of the run (tracebacks included)
``sentinel.log``        what the sentinel did after the flow process died, if anything
======================  ===================================================================

Statuses: ``running`` → ``finished`` | ``failed`` | ``killed`` (SIGINT/SIGTERM).

Example:
    >>> import tempfile
    >>> layout = RunsLayout(tempfile.mkdtemp())
    >>> record = RunRecord.create(layout, overrides={"method.train.seed": 1})
    >>> record.status, record.path.name
    ('running', 'run.json')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.atomic import atomic_write_text
from components.runs.processes import ProcessIdentity

STATE_DIR = ".matryoshka"
RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
TERMINAL = (FINISHED, FAILED, KILLED)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunsLayout:
    """Paths of the run folders of one project (``<project>/.matryoshka/runs/``)."""

    project: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "project", Path(self.project).resolve())

    @property
    def state_dir(self) -> Path:
        return self.project / STATE_DIR

    @property
    def root(self) -> Path:
        return self.state_dir / "runs"

    @property
    def apply_lock(self) -> Path:
        """Serialises applying runs' outputs to the checkout."""
        return self.state_dir / "apply.lock"

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def run_ids(self) -> list[str]:
        """Every run id, oldest first (ids sort by creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "run.json").is_file())


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx``: sorts by creation time, unique across processes."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class RunRecord:
    """The ``run.json`` of one run; every change is written atomically at once.

    Attributes:
        directory: the run folder.
        data: the record's fields (``run_id``, ``status``, ``owner``, ``children``,
            ``mlflow``, ``registry``, ``step``, ...).
    """

    directory: Path
    data: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def path(self) -> Path:
        return self.directory / "run.json"

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    @property
    def status(self) -> str:
        return str(self.data.get("status", RUNNING))

    @property
    def workspace(self) -> Path:
        return self.directory / "workspace"

    @property
    def owner_lock(self) -> Path:
        return self.directory / "owner.lock"

    @property
    def log_path(self) -> Path:
        return self.directory / "flow.log"

    # ------------------------------------------------------------------ create / read
    @classmethod
    def create(
        cls,
        layout: RunsLayout,
        *,
        overrides: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """A new run folder with a ``running`` record owned by this process."""
        run_id = run_id or new_run_id()
        directory = layout.run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=False)
        record = cls(
            directory,
            {
                "run_id": run_id,
                "project": str(layout.project),
                "status": RUNNING,
                "created_at": now_iso(),
                "heartbeat_at": now_iso(),
                "host": socket.gethostname(),
                "owner": ProcessIdentity.of(os.getpid(), what="flow").to_dict(),
                "overrides": dict(overrides or {}),
                "step": "start",
                "children": [],
            },
        )
        record.save()
        return record

    @classmethod
    def load(cls, directory: str | Path) -> RunRecord:
        directory = Path(directory)
        return cls(directory, json.loads((directory / "run.json").read_text(encoding="utf-8")))

    def save(self) -> None:
        text = json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write_text(self.path, text)

    def update(self, **fields: Any) -> None:
        """Set fields and write the record."""
        with self._lock:
            self.data.update(fields)
            self.save()

    # ------------------------------------------------------------------ processes
    def add_child(self, identity: ProcessIdentity) -> None:
        """Record a process this run started, before anything else can happen to it."""
        with self._lock:
            children = [c for c in self.data.get("children", []) if c["pid"] != identity.pid]
            children.append(identity.to_dict())
            self.data["children"] = children
            self.save()

    def children(self) -> list[ProcessIdentity]:
        return [ProcessIdentity.from_dict(c) for c in self.data.get("children", [])]

    def owner(self) -> ProcessIdentity:
        return ProcessIdentity.from_dict(self.data["owner"])


@contextlib.contextmanager
def hold(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` inside the block; yields whether it was
    taken (always True when ``blocking``). The kernel drops it when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class OwnerLock:
    """The flow process's hold on ``owner.lock``, kept open for the life of the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new run folder: never contended
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
