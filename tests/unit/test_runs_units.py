"""Isolated runs, piece by piece, with real processes and files (no Prefect, no MLflow)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.runs import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    ApplyError,
    RunRecord,
    RunsLayout,
    apply_run,
    create_workspace,
    open_run,
    reap_orphans,
)
from components.runs.processes import ProcessIdentity, exit_reason, process_start, terminate
from components.runs.record import hold
from components.runs.workspace import changed_since, snapshot_files

DVC = str(Path(sys.executable).parent / "dvc")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git + DVC project with a params file, a stage graph, data and some state dirs."""
    root = tmp_path / "project"
    (root / "data" / "d").mkdir(parents=True)
    (root / "data" / "d" / "corpus.jsonl").write_text('{"_id": "1", "text": "a"}\n')
    (root / "params.yaml").write_text("# keep me\nmethod:\n  train:\n    seed: 0   # the seed\n")
    (root / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo\n    outs: [runs/s]\n")
    (root / ".gitignore").write_text("/runs/\n/.matryoshka/\n/ignored/\n")
    git(root, "init", "-q")
    subprocess.run([DVC, "init", "-q"], cwd=root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    (root / "runs" / "s").mkdir(parents=True)
    (root / "runs" / "s" / "old.txt").write_text("stale output")
    (root / "ignored").mkdir()
    (root / "ignored" / "big.bin").write_bytes(b"x" * 10)
    (root / "notes.txt").write_text("untracked, not ignored")
    return root


# --- processes --------------------------------------------------------------------------
def test_identity_tells_a_reused_pid_from_the_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = ProcessIdentity.of(child.pid)
    assert identity.alive() and identity.start == process_start(child.pid)
    stranger = ProcessIdentity(child.pid, (identity.start or 0) + 1)
    assert not stranger.alive()  # same PID, other start time: not ours
    assert terminate([stranger], grace_s=0.2) == []  # never signalled
    assert child.poll() is None
    assert terminate([identity], grace_s=5) == [identity]
    assert child.wait(5) == -signal.SIGTERM
    assert not identity.alive()


def test_terminate_ends_a_whole_process_group_even_after_its_leader_died() -> None:
    # The leader starts a grandchild in its group, then exits: the group lives on.
    script = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(p.pid, flush=True)"
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, process_group=0
    )
    grandchild = int(leader.stdout.readline())
    identity = ProcessIdentity.of(leader.pid, group=True, what="stage")
    leader.wait(10)
    assert identity.group_members() == [grandchild]
    assert identity.running()
    terminate([identity], grace_s=5)
    deadline = time.monotonic() + 5
    while process_start(grandchild) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start(grandchild) is None
    assert not identity.running()


def test_exit_reasons() -> None:
    class Termination(BaseException):
        signal = signal.SIGTERM

    assert exit_reason(Termination()) == "terminated by SIGTERM"
    assert exit_reason(KeyboardInterrupt()) == "interrupted by SIGINT (Ctrl-C)"
    assert exit_reason(ValueError("bad row")) == "bad row"
    assert exit_reason(RuntimeError()) == "RuntimeError"


# --- records and locks ------------------------------------------------------------------
def test_owner_lock_is_free_exactly_when_its_holder_died(tmp_path: Path) -> None:
    lock = tmp_path / "owner.lock"
    code = (
        "import fcntl, os, sys, time; "
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with hold(lock, blocking=False) as free:
        assert not free
    holder.kill()  # SIGKILL: no cleanup code runs, the kernel still drops the lock
    holder.wait(5)
    with hold(lock, blocking=False) as free:
        assert free


def test_reap_orphans_marks_a_dead_run_failed_and_ends_its_processes(tmp_path: Path) -> None:
    layout = RunsLayout(tmp_path)
    record = RunRecord.create(layout, overrides={"method.train.seed": 1})
    stage = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], process_group=0)
    record.add_child(ProcessIdentity.of(stage.pid, group=True, what="stage pretrain"))
    record.update(step="pretrain")
    # A dead owner: nobody holds owner.lock. A live one (a lock holder) is left alone.
    live = RunRecord.create(layout)
    code = (
        "import fcntl, os, time; "
        f"fd = os.open({str(live.owner_lock)!r}, os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert reap_orphans(layout) == [record.run_id]
        assert stage.wait(10) == -signal.SIGTERM
        dead = RunRecord.load(record.directory)
        assert dead.status == FAILED
        assert "during step 'pretrain'" in dead.data["message"]
        assert RunRecord.load(live.directory).status == RUNNING
        assert reap_orphans(layout) == []  # idempotent
    finally:
        holder.kill()
        holder.wait(5)


def test_open_run_records_the_outcome(tmp_path: Path) -> None:
    with open_run(tmp_path, {"a.b": 1}) as run:
        assert run.record.status == RUNNING
        sentinel = int(run.record.data["sentinel_pid"])
        assert process_start(sentinel) is not None
    assert RunRecord.load(run.record.directory).status == FINISHED
    deadline = time.monotonic() + 10  # the sentinel sees a finished run and exits
    while process_start(sentinel) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start(sentinel) is None

    with pytest.raises(ValueError) as failure, open_run(tmp_path) as failed:
        raise ValueError("stage failed")
    assert RunRecord.load(failed.record.directory).status == FAILED
    assert "full log:" in failure.value.__notes__[0]
    with pytest.raises(KeyboardInterrupt), open_run(tmp_path) as interrupted:
        raise KeyboardInterrupt
    record = RunRecord.load(interrupted.record.directory)
    assert record.status == KILLED and "SIGINT" in record.data["message"]


def test_stage_output_ends_its_group_when_interrupted(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    with pytest.raises(KeyboardInterrupt), open_run(tmp_path) as run:
        for line in run.stage_output(
            "stage x", [sys.executable, "-c", script], cwd=tmp_path, env=os.environ
        ):
            grandchild = int(line)
            raise KeyboardInterrupt
    assert process_start(grandchild) is None
    (child,) = [c for c in run.record.children() if c.group]
    assert child.what == "stage x" and not child.running()


# --- workspaces -------------------------------------------------------------------------
def test_snapshot_is_the_working_tree_without_outputs_or_ignored_files(project: Path) -> None:
    files = snapshot_files(project, ["runs/s"])
    assert "notes.txt" in files and "params.yaml" in files and "data/d/corpus.jsonl" in files
    assert ".dvc/config" in files
    assert not any(f.startswith(("runs/", "ignored/", ".git/", ".dvc/cache")) for f in files)


def test_workspace_holds_the_overrides_and_shares_the_dvc_cache(project: Path) -> None:
    before = {name: (project / name).read_bytes() for name in snapshot_files(project)}
    ws = create_workspace(
        project,
        project / ".matryoshka" / "w",
        overrides={"method.train.seed": 7},
        outputs=["runs/s"],
        shared=[".cache/embeddings", "ignored"],
    )
    text = (ws.root / "params.yaml").read_text()
    assert "seed: 7" in text and "# keep me" in text and "# the seed" in text
    assert not (ws.root / "runs").exists()
    assert (ws.root / "ignored").is_symlink() and (ws.root / ".cache" / "embeddings").is_symlink()
    cache = subprocess.run(
        [DVC, "cache", "dir"], cwd=ws.root, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(cache) == (project / ".dvc" / "cache").resolve()
    # The manifest records the checkout's params.yaml, not the workspace's overridden copy.
    assert ws.manifest["params.yaml"] == hashlib.sha256(before["params.yaml"]).hexdigest()
    after = {name: (project / name).read_bytes() for name in snapshot_files(project)}
    assert after == before  # nothing written to the checkout
    assert changed_since(project, ws.manifest) == []
    (project / "params.yaml").write_text("method: {}\n")
    assert changed_since(project, ws.manifest) == ["params.yaml"]


def test_a_folder_outside_git_is_snapshotted_too(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "components").mkdir(parents=True)
    (root / "components" / "a.py").write_text("x = 1\n")
    (root / "components" / "__pycache__").mkdir()
    (root / "components" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    (root / "mlflow").mkdir()
    (root / "mlflow" / "mlflow.db").write_bytes(b"db")
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=root, check=True)
    files = snapshot_files(root)
    assert "components/a.py" in files and ".dvc/config" in files
    assert not any("__pycache__" in f or f.startswith("mlflow/") for f in files)


# --- apply ------------------------------------------------------------------------------
def _finished_run(project: Path, overrides: dict | None = None) -> tuple[RunsLayout, str]:
    layout = RunsLayout(project)
    with open_run(project, overrides) as run:
        ws = create_workspace(
            project, run.record.workspace, overrides=overrides, outputs=["runs/s"]
        )
        (ws.root / "runs" / "s").mkdir(parents=True)
        (ws.root / "runs" / "s" / "new.txt").write_text("fresh output")
        (ws.root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    return layout, run.run_id


def test_apply_copies_outputs_and_lock_atomically(project: Path) -> None:
    layout, run_id = _finished_run(project)
    applied = apply_run(layout, run_id, ["runs/s"])
    assert applied.outputs == ("runs/s",) and applied.files == ("dvc.lock",)
    assert sorted(p.name for p in (project / "runs" / "s").iterdir()) == ["new.txt"]
    assert (project / "dvc.lock").read_text().startswith("schema: '2.0'")
    assert not list((project / "runs").glob(".s.*"))  # no staging left behind
    assert RunRecord.load(layout.run_dir(run_id)).data["applied_at"]


def test_apply_refuses_changed_checkouts_and_overrides(project: Path) -> None:
    layout, run_id = _finished_run(project, {"method.train.seed": 7})
    with pytest.raises(ApplyError, match=r"overrides \(method\.train\.seed=7\).*--with-params"):
        apply_run(layout, run_id, ["runs/s"])
    (project / "params.yaml").write_text("method: {}\n")
    with pytest.raises(ApplyError, match=r"changed since run .* \(params\.yaml\)"):
        apply_run(layout, run_id, ["runs/s"], with_params=True)
    applied = apply_run(layout, run_id, ["runs/s"], with_params=True, force=True)
    assert applied.files == ("params.yaml", "dvc.lock")
    assert "seed: 7" in (project / "params.yaml").read_text()
    with pytest.raises(ApplyError, match="no run 'nope'"):
        apply_run(layout, "nope", [])


def test_a_failed_run_cannot_be_applied(project: Path) -> None:
    layout = RunsLayout(project)
    with pytest.raises(RuntimeError), open_run(project) as run:
        raise RuntimeError("boom")
    with pytest.raises(ApplyError, match="is failed: only a finished run"):
        apply_run(layout, run.run_id, [])
    assert json.loads((run.record.directory / "run.json").read_text())["status"] == FAILED


# --- restoring unchanged stages in-process ------------------------------------------------
def _pipeline(root: Path, value: str) -> None:
    (root / "params.yaml").write_text(f"value: {value}\n")
    (root / "in.txt").write_text("input\n")
    (root / "dvc.yaml").write_text(
        "stages:\n"
        "  first:\n    cmd: cat in.txt > mid.txt && echo ${value} >> mid.txt\n"
        "    deps: [in.txt]\n    params: [value]\n    outs: [mid.txt]\n"
        "  second:\n    cmd: wc -c mid.txt > out.txt\n    deps: [mid.txt]\n    outs: [out.txt]\n"
    )


def test_unchanged_stages_are_restored_in_process_like_dvc_repro(tmp_path: Path) -> None:
    from components.runs.restore import StageRestorer

    project = tmp_path / "project"
    project.mkdir()
    _pipeline(project, "a")
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=project, check=True)
    subprocess.run([DVC, "repro", "-q"], cwd=project, check=True)  # fills the run-cache
    expected_lock = (project / "dvc.lock").read_text()

    ws = create_workspace(project, tmp_path / "ws", outputs=["mid.txt", "out.txt"])
    assert not (ws.root / "out.txt").exists()
    (ws.root / "dvc.lock").unlink()
    with StageRestorer(ws.root) as restorer:
        assert restorer.restore("first") == "cached"
        assert restorer.restore("second") == "cached"
        assert restorer.restore("second") == "unchanged"
    assert (ws.root / "out.txt").read_text() == (project / "out.txt").read_text()
    assert (ws.root / "dvc.lock").read_text() == expected_lock  # what `dvc repro` wrote

    changed = create_workspace(
        project, tmp_path / "ws2", overrides={"value": "b"}, outputs=["mid.txt", "out.txt"]
    )
    with StageRestorer(changed.root) as restorer:
        assert restorer.restore("first") is None  # never run in-process: it has to run
    assert not (changed.root / "mid.txt").exists()
