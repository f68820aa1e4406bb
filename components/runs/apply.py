"""Applying a finished run's outputs to the checkout: the one step that writes there.

``matryoshka apply RUN`` (or ``matryoshka run --apply``) copies the run's stage outputs
(every ``outs`` path of its ``dvc.yaml``) and its ``dvc.lock`` into the checkout, so that
``dvc status`` there is clean and ``runs/`` holds that run's results. Each output is
assembled beside its target and renamed into place (a directory is swapped whole); the
``dvc.lock`` is replaced last, so an interrupted apply leaves the lock of the previous
state and ``dvc status`` says what differs. It refuses, naming the files, when:

* the run did not finish;
* the checkout changed since the run's snapshot (its outputs would not match the code or
  params there now), unless forced;
* the run had overrides: its outputs belong to a different ``params.yaml``; with
  ``with_params`` the run's ``params.yaml`` is written as well, a deliberate choice.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from components.atomic import atomic_write_bytes, remove_path, staged_directory
from components.params import PARAMS_FILE
from components.runs.record import FINISHED, RunRecord, RunsLayout, hold, now_iso
from components.runs.workspace import MANIFEST_FILE, changed_since

LOCK_FILE = "dvc.lock"


class ApplyError(RuntimeError):
    """The run's outputs cannot be applied; the message says why and what to do."""


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_run` wrote into the checkout (relative paths)."""

    run_id: str
    outputs: tuple[str, ...]
    files: tuple[str, ...]


def _writable_copy(source: Path, target: Path) -> None:
    """Copy a file or folder; DVC's cache links are read-only, the checkout's copy is not."""
    if source.is_dir():
        shutil.copytree(source, target, symlinks=False, dirs_exist_ok=True)
        for folder, _, names in os.walk(target):
            for name in names:
                path = Path(folder) / name
                path.chmod(path.stat().st_mode | 0o200)
    else:
        shutil.copyfile(source, target)


def apply_run(
    layout: RunsLayout,
    run_id: str,
    outputs: list[str],
    *,
    force: bool = False,
    with_params: bool = False,
) -> Applied:
    """Copy run ``run_id``'s ``outputs`` and ``dvc.lock`` into the checkout.

    Args:
        layout: the project's runs.
        run_id: the run (``latest`` is resolved by the caller).
        outputs: the stage outputs to copy (``dvc.yaml`` outs, relative paths).
        force: apply even though the checkout changed since the run started.
        with_params: also write the run's ``params.yaml`` (required for a run with
            overrides).

    Raises:
        ApplyError: see the module docstring.
    """
    directory = layout.run_dir(run_id)
    if not (directory / "run.json").is_file():
        raise ApplyError(f"no run {run_id!r} in {layout.root}; `matryoshka runs` lists them")
    record = RunRecord.load(directory)
    if record.status != FINISHED:
        raise ApplyError(f"run {run_id} is {record.status}: only a finished run can be applied")
    workspace = record.workspace
    if not (workspace / LOCK_FILE).is_file():
        raise ApplyError(f"{workspace}: the run's workspace is gone (pruned); re-run instead")
    overrides = record.data.get("overrides") or {}
    if overrides and not with_params:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        raise ApplyError(
            f"run {run_id} ran with overrides ({shown}): its outputs do not match the "
            "checkout's params.yaml; pass --with-params to write the run's params.yaml too"
        )
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
    changed = changed_since(layout.project, manifest)
    if changed and not force:
        shown = ", ".join(changed[:8]) + (
            f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        )
        raise ApplyError(
            f"the checkout changed since run {run_id} started ({shown}); its outputs would "
            "not match: re-run, or pass --force"
        )
    project = layout.project
    written: list[str] = []
    with hold(layout.apply_lock):
        for out in outputs:
            source, target = workspace / out, project / out
            if source.is_dir():
                with staged_directory(target) as staging:
                    _writable_copy(source, staging)
            elif source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, source.read_bytes())
            else:
                remove_path(target)
            written.append(out)
        files = [LOCK_FILE]
        if with_params:
            files.insert(0, str(PARAMS_FILE))
        for name in files:
            atomic_write_bytes(project / name, (workspace / name).read_bytes())
        record.update(applied_at=now_iso())
    return Applied(run_id, tuple(written), tuple(files))
