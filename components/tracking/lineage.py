"""Lineage for a run: the git commit of the code and the DVC hashes from ``dvc.lock``.

``dvc.lock`` records, per stage, the md5 of every dependency and output DVC saw when it last
ran the stage. :func:`dvc_lock_tags` turns them into MLflow tags ``dvc.<stage>.<path>`` so a
run points at the exact data and outputs it was computed from (``dvc.embed.runs/embeddings``
→ ``3f2a….dir``), and ``dvc checkout`` / the DVC cache can bring them back.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DVC_TAG_PREFIX = "dvc"
_HASH_FIELDS = ("md5", "etag", "checksum", "hash_value")
_UNSAFE_TAG = re.compile(r"[^\w\-. :/]")


@dataclass(frozen=True)
class GitInfo:
    """The commit a run's code came from; ``dirty`` when tracked files were modified."""

    commit: str | None
    branch: str | None
    dirty: bool | None

    def tags(self) -> dict[str, str]:
        """``git_commit``, ``git_dirty``, ``git_branch`` and MLflow's own source tag."""
        if self.commit is None:
            return {"git_commit": "unknown"}
        tags = {
            "git_commit": self.commit,
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
                    entry[kind][str(item["path"])] = digest
        out[str(stage)] = entry
    return out


def dvc_lock_tags(path: str | Path) -> dict[str, str]:
    """MLflow tags ``dvc.<stage>.<path>`` = md5 for every dep and out in ``dvc.lock``."""
    tags: dict[str, str] = {}
    for stage, entry in read_dvc_lock(path).items():
        for kind in ("deps", "outs"):
            for item_path, digest in entry[kind].items():
                tags[_UNSAFE_TAG.sub("_", f"{DVC_TAG_PREFIX}.{stage}.{item_path}")] = digest
    return tags
