"""Lineage for a run: one JSON document, a few searchable tags.

A run's lineage is the git commit of the code, the dataset fingerprint and, per DVC stage,
the hash of every dependency and output DVC saw when it last ran the stage (``dvc.lock``).
It is logged as ONE artifact, ``lineage/lineage.json`` on the MLflow run (the registered
version's ``lineage`` tag points at it), plus a handful of tags to search by: ``git_commit``
(and MLflow's ``mlflow.source.git.commit``), ``git_dirty``, ``git_branch`` and
``dvc_lock_digest``, the sha256 of ``dvc.lock`` (``sha256sum dvc.lock`` gives the same):
two runs with the same digest ran every stage on identical inputs and produced identical
outputs. ``dvc checkout`` / the DVC cache bring the hashed data back.

Example:
    >>> lineage = collect_lineage(".", "dvc.lock", dataset_fingerprint="ab12")  # doctest: +SKIP
    >>> sorted(lineage.tags())  # doctest: +SKIP
    ['dvc_lock_digest', 'git_branch', 'git_commit', 'git_dirty', 'mlflow.source.git.commit']
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.tracking.params import mask_credentials

LINEAGE_ARTIFACT = "lineage/lineage.json"
LINEAGE_SCHEMA = 1
DVC_LOCK_DIGEST_TAG = "dvc_lock_digest"
GIT_COMMIT_TAG = "git_commit"
_HASH_FIELDS = ("md5", "etag", "checksum", "hash_value")


@dataclass(frozen=True)
class GitInfo:
    """The commit a run's code came from; ``dirty`` when tracked files were modified."""

    commit: str | None
    branch: str | None
    dirty: bool | None

    def tags(self) -> dict[str, str]:
        """``git_commit``, ``git_dirty``, ``git_branch`` and MLflow's own source tag."""
        if self.commit is None:
            return {GIT_COMMIT_TAG: "unknown"}
        tags = {
            GIT_COMMIT_TAG: self.commit,
            "mlflow.source.git.commit": self.commit,
            "git_dirty": str(bool(self.dirty)).lower(),
        }
        if self.branch:
            tags["git_branch"] = self.branch
        return tags


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(root: str | Path) -> GitInfo:
    """Commit, branch and dirty flag of the git work tree holding ``root`` (Nones outside
    git or without a git executable). Untracked files do not make the tree dirty."""
    root = Path(root)
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return GitInfo(None, None, None)
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return GitInfo(
        commit,
        None if branch in (None, "HEAD") else branch,
        None if status is None else bool(status),
    )


def _entry_hash(entry: dict[str, Any]) -> str | None:
    for name in _HASH_FIELDS:
        if entry.get(name):
            return str(entry[name])
    return None


def read_dvc_lock(path: str | Path) -> dict[str, dict[str, dict[str, str]]]:
    """``stage → {"deps": {path: hash}, "outs": {path: hash}}`` from a ``dvc.lock``.

    A missing file gives ``{}``; a file in an unknown layout raises ValueError naming it.
    Paths are kept as DVC wrote them, with URL credentials masked (an ``import-url`` dep
    may carry them).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if not isinstance(stages, dict):
        raise ValueError(f"{path}: expected a 'stages:' mapping (dvc.lock schema 2.0)")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for stage, body in stages.items():
        entry: dict[str, dict[str, str]] = {"deps": {}, "outs": {}}
        for kind in ("deps", "outs"):
            for item in (body or {}).get(kind) or []:
                digest = _entry_hash(item) if isinstance(item, dict) else None
                if digest is not None and item.get("path"):
                    entry[kind][mask_credentials(str(item["path"]))] = digest
        out[str(stage)] = entry
    return out


def dvc_lock_digest(path: str | Path) -> str | None:
    """sha256 (hex) of the ``dvc.lock`` file's bytes; None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Lineage:
    """Everything a run was computed from (see the module docstring).

    Attributes:
        git: the code's commit.
        dvc_lock_digest: sha256 of ``dvc.lock`` (None without one).
        stages: ``stage → {"deps"|"outs": {path: hash}}`` from ``dvc.lock``.
        dataset_fingerprint: the dataset's content fingerprint, when known.
    """

    git: GitInfo
    dvc_lock_digest: str | None = None
    stages: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    dataset_fingerprint: str | None = None

    def tags(self) -> dict[str, str]:
        """The few searchable tags (the dataset fingerprint has its own, set with the
        dataset input: ``dataset.fingerprint``)."""
        tags = self.git.tags()
        if self.dvc_lock_digest:
            tags[DVC_LOCK_DIGEST_TAG] = self.dvc_lock_digest
        return tags

    def to_dict(self) -> dict[str, Any]:
        """The ``lineage.json`` document."""
        return {
            "schema": LINEAGE_SCHEMA,
            "git": {"commit": self.git.commit, "branch": self.git.branch, "dirty": self.git.dirty},
            "dataset_fingerprint": self.dataset_fingerprint,
            "dvc_lock": {"sha256": self.dvc_lock_digest, "stages": self.stages},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def collect_lineage(
    root: str | Path,
    dvc_lock: str | Path | None = None,
    *,
    code_root: str | Path | None = None,
    dataset_fingerprint: str | None = None,
) -> Lineage:
    """The lineage of ``root``: its git commit (else ``code_root``'s, for a workspace outside
    git) and the ``dvc.lock`` (default ``root/dvc.lock``) hashes and digest."""
    info = git_info(root)
    if info.commit is None and code_root is not None:
        info = git_info(code_root)
    lock = Path(dvc_lock) if dvc_lock is not None else Path(root) / "dvc.lock"
    return Lineage(
        git=info,
        dvc_lock_digest=dvc_lock_digest(lock),
        stages=read_dvc_lock(lock),
        dataset_fingerprint=dataset_fingerprint,
    )


def lineage_uri(run_id: str) -> str:
    """Where a run's lineage document lives (``runs:/<run_id>/lineage/lineage.json``)."""
    return f"runs:/{run_id}/{LINEAGE_ARTIFACT}"


def read_run_lineage(client: Any, run_id: str | None) -> dict[str, Any] | None:
    """A run's ``lineage/lineage.json`` through an ``MlflowClient``; None when the run has
    none (runs logged before lineage documents existed). A store that cannot be read
    raises as MLflow does: a missing document is not confused with an unreachable one."""
    if not run_id:
        return None
    folder = LINEAGE_ARTIFACT.rsplit("/", 1)[0]
    if LINEAGE_ARTIFACT not in {item.path for item in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory(prefix="lineage-") as tmp:
        path = client.download_artifacts(run_id, LINEAGE_ARTIFACT, tmp)
        return json.loads(Path(path).read_text(encoding="utf-8"))
