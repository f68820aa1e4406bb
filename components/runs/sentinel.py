"""The sentinel: a small process per run that cleans up the moment the flow process dies.

``python -m components.runs <run folder>`` blocks on the run's ``owner.lock``,
which the flow process holds for its whole life; the kernel releases it when that process
ends, however it ends. If the record then still says ``running``, the flow died without
finishing (``kill -9``, out of memory) and the sentinel runs :func:`reap`: stage process
groups and the temporary Prefect server are ended, the MLflow run is marked ``FAILED``,
an unfinished model version is removed. It runs in a session of its own, so a signal to the
flow's process group does not reach it, and it exits at once after a normal finish.

Started by :func:`start_sentinel`; every later run also reaps orphans at its start, in
case the sentinel itself was killed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from components.runs.record import RUNNING, RunRecord, hold


def start_sentinel(record: RunRecord) -> int:
    """Start the sentinel of ``record`` (whose owner lock this process holds); its PID."""
    log_file = (record.directory / "sentinel.log").open("ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "components.runs", str(record.directory)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log_file.close()
    record.update(sentinel_pid=process.pid)
    return process.pid


def watch(directory: Path) -> int:
    """Wait for the run's owner to go, then clean up if it did not finish."""
    record = RunRecord.load(directory)
    with hold(record.owner_lock):  # blocks until the flow process has ended
        record = RunRecord.load(directory)
        if record.status != RUNNING:
            return 0
        from components.runs.reaper import reap

        reap(record)
    return 0


def main(argv: list[str] | None = None) -> int:
    from components.runtime import configure_environment

    configure_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m components.runs RUN_FOLDER", file=sys.stderr)
        return 2
    return watch(Path(args[0]))
