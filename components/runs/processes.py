"""Processes a run starts, identified so that a later cleanup never hits a stranger.

A PID alone is not an identity: after a process dies the kernel may give its number to
another one. :class:`ProcessIdentity` pairs the PID with the process's start time (field 22
of ``/proc/<pid>/stat``, clock ticks since boot), which no later process shares. Stage
commands run as the leader of their own process group, so one ``killpg`` ends DVC, the
shell and the stage command together.

Linux only (``/proc``); elsewhere identities degrade to the PID and a liveness probe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (None: no such process)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces.
    return raw[raw.rfind(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (None: not running)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    if fields[0] == "Z":  # a zombie has finished; only its exit status is left
        return None
    return int(fields[19])


def process_group(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[2])


@dataclass(frozen=True)
class ProcessIdentity:
    """A process by PID and start time; ``group`` when it leads its own process group.

    Attributes:
        pid: the process id.
        start: start time (clock ticks since boot), ``None`` where ``/proc`` is missing.
        group: the process leads a group of its own: cleanup signals the whole group.
        what: a short description for logs (``stage pretrain``, ``prefect server``).
    """

    pid: int
    start: int | None
    group: bool = False
    what: str = ""

    @classmethod
    def of(cls, pid: int, *, group: bool = False, what: str = "") -> ProcessIdentity:
        return cls(pid, process_start(pid), group, what)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessIdentity:
        return cls(
            int(data["pid"]), data.get("start"), bool(data.get("group")), data.get("what", "")
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def alive(self) -> bool:
        """The same process (PID and start time) is still running."""
        if self.start is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return process_start(self.pid) == self.start

    def group_members(self) -> list[int]:
        """PIDs in this process's group (empty unless it leads one).

        Safe after the leader died: Linux never hands out a PID that is still some group's
        id, so processes found with this group id are the group's own.
        """
        if not self.group:
            return []
        if process_start(self.pid) not in (None, self.start):
            return []  # the PID now belongs to another process: the group is gone
        return [
            int(entry.name)
            for entry in _PROC.iterdir()
            if entry.name.isdigit()
            and process_group(int(entry.name)) == self.pid
            and process_start(int(entry.name)) is not None
        ]

    def running(self) -> bool:
        """The process, or any member of its group, is still running."""
        return self.alive() or bool(self.group_members())


def exit_reason(error: BaseException | str) -> str:
    """A message for why a run ended: the error's text, or which signal interrupted it
    (``KeyboardInterrupt`` is SIGINT; Prefect's ``TerminationSignal`` carries ``.signal``)."""
    if isinstance(error, str):
        return error
    number = getattr(error, "signal", None)
    if isinstance(number, int):
        return f"terminated by {signal.Signals(number).name}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted by SIGINT (Ctrl-C)"
    return str(error) or type(error).__name__


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads)."""
    found: list[int] = []
    for task in (_PROC / str(pid) / "task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in (task / "children").read_text().split())
    return sorted(set(found))


def _signal(identity: ProcessIdentity, sig: int) -> None:
    if identity.group and identity.group_members():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(identity.pid, sig)
    elif identity.alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(identity.pid, sig)


def terminate(identities: list[ProcessIdentity], grace_s: float = 5.0) -> list[ProcessIdentity]:
    """SIGTERM each (whole group for leaders), SIGKILL what is left after ``grace_s``.

    Returns:
        The identities that were still running when this was called.
    """
    running = [identity for identity in identities if identity.running()]
    for identity in running:
        _signal(identity, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(i.running() for i in running):
        time.sleep(0.05)
    for identity in running:
        if identity.running():
            _signal(identity, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(i.running() for i in running):
        time.sleep(0.05)
    return running
