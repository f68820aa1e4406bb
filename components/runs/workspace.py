"""A run's isolated workspace: a snapshot of the project that the stages run in.

Why a copy (measured options in docs/pipeline.md, "Where a run executes"): the stages must
see exactly the files of the moment the run started, with the run's own params, while the
user keeps editing the checkout and other runs proceed beside it. The workspace is

* every file of the working tree as the user sees it: for a git checkout, tracked files as
  they are on disk plus untracked files git does not ignore (uncommitted edits included);
  for a folder outside git, every file except tool state and stage outputs;
* the run's ``params.yaml``: the checkout's file with the run's overrides applied (comments
  kept), so DVC hashes and locks exactly what the stages use;
* ``.dvc/config.local`` pointing at the checkout's DVC cache (``cache.dir``), so unchanged
  stages are restored from DVC's cache and run-cache instead of recomputed, with hardlinks
  where the file system allows (no copy of large matrices);
* links back to the checkout for what must be shared, not snapshotted: the embedding
  cache (paid-for API vectors) and a dataset folder git does not hold.

Stage outputs (the ``outs`` of ``dvc.yaml``) are never copied in: DVC restores or recomputes
them. Nothing here writes to the checkout.

Example:
    >>> ws = create_workspace(project, target, overrides={"method.train.seed": 2})
    ... # doctest: +SKIP
    >>> ws.digest  # sha256 over the snapshot's manifest  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from components.atomic import atomic_write_text
from components.params import PARAMS_FILE, overridden_params_text

MANIFEST_FILE = "manifest.json"
# Never part of a snapshot of a folder outside git: tool state, caches, stage outputs.
_SKIP_TOP = {
    ".git",
    ".matryoshka",
    ".venv",
    ".cache",
    ".prefect",
    ".pytest_cache",
    ".ruff_cache",
    "mlflow",
}
_SKIP_DVC = {"cache", "tmp", "config.local"}
_LINK_TYPES = "reflink,hardlink,copy"


class WorkspaceError(RuntimeError):
    """The workspace cannot be made (the message says which file or tool failed)."""


@dataclass(frozen=True)
class Workspace:
    """A prepared workspace.

    Attributes:
        root: the workspace folder.
        project: the checkout it was copied from.
        manifest: relative path → sha256 of every file copied from the checkout (the
            checkout's ``params.yaml`` as it was, before the overrides).
        digest: sha256 of the manifest: one value naming the snapshot.
        links: relative path → checkout path for what is linked, not copied.
    """

    root: Path
    project: Path
    manifest: dict[str, str]
    digest: str
    links: dict[str, str]


def _git_files(project: Path) -> list[str] | None:
    """Working-tree files git shows (tracked + untracked, not ignored); None outside git."""
    try:
        done = subprocess.run(
            [
                "git",
                "-C",
                str(project),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    # ls-files answers relative to the folder it runs in (-C project): what we need.
    names = [n for n in done.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return sorted(set(names))


def _walk_files(project: Path) -> list[str]:
    files = []
    for folder, dirs, names in os.walk(project):
        rel = Path(folder).relative_to(project)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in _SKIP_TOP]
        elif rel == Path(".dvc"):
            dirs[:] = [d for d in dirs if d not in _SKIP_DVC]
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if rel == Path(".dvc") and name in _SKIP_DVC:
                continue
            if name.endswith(".pyc"):
                continue
            files.append((rel / name).as_posix())
    return sorted(files)


def _inside(path: str, roots: Iterable[str]) -> bool:
    candidate = PurePosixPath(path)
    for root in roots:
        base = PurePosixPath(root.rstrip("/"))
        if candidate == base or base in candidate.parents:
            return True
    return False


def snapshot_files(project: Path, outputs: Iterable[str] = ()) -> list[str]:
    """The relative paths a snapshot of ``project`` copies (stage ``outputs`` excluded)."""
    names = _git_files(project)
    if names is None:
        names = _walk_files(project)
    outs = [o for o in outputs if o]
    return [
        n
        for n in names
        if not _inside(n, outs)
        and not n.startswith(".matryoshka/")
        and (project / n).is_file()
        and not (project / n).is_symlink()
    ]


def _copy_hashed(source: Path, target: Path) -> str:
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    shutil.copystat(source, target)
    return hashlib.sha256(data).hexdigest()


def manifest_digest(manifest: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(manifest.items()))).encode()).hexdigest()


def dvc_cache_dir(project: Path) -> Path:
    """The checkout's DVC cache folder, resolved as DVC resolves it (local, repo, global and
    system config; default ``.dvc/cache``)."""
    from dvc.config import Config, ConfigError

    dvc_dir = project / ".dvc"
    try:
        configured = Config(dvc_dir=str(dvc_dir))["cache"].get("dir")
    except ConfigError as exc:
        raise WorkspaceError(f"{dvc_dir}: the DVC config cannot be read ({exc})") from None
    return Path(configured).resolve() if configured else (dvc_dir / "cache").resolve()


def _write_dvc_local_config(project: Path, workspace: Path, cache_dir: Path) -> None:
    """The checkout's local DVC config plus: no git here, the checkout's cache, links."""
    from configobj import ConfigObj

    config = ConfigObj(str(project / ".dvc" / "config.local"), encoding="utf-8")
    config.filename = str(workspace / ".dvc" / "config.local")
    config.setdefault("core", {})["no_scm"] = "true"
    cache = config.setdefault("cache", {})
    cache["dir"] = str(cache_dir)
    cache["type"] = _LINK_TYPES
    (workspace / ".dvc").mkdir(parents=True, exist_ok=True)
    config.write()


def create_workspace(
    project: str | Path,
    target: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    outputs: Iterable[str] = (),
    shared: Iterable[str] = (),
) -> Workspace:
    """Copy ``project`` into ``target`` (which must not exist) and prepare it for DVC.

    Args:
        project: the checkout (holds ``dvc.yaml``, ``params.yaml`` and ``.dvc/``).
        target: the new workspace folder.
        overrides: dotted params keys written into the workspace's ``params.yaml``.
        outputs: stage outputs (``dvc.yaml`` outs), never copied.
        shared: relative paths linked to the checkout instead of copied (the embedding
            cache, a dataset folder outside git); absolute ones are used where they are.

    Raises:
        WorkspaceError: the checkout is not a DVC project or DVC cannot be asked.
    """
    project, root = Path(project).resolve(), Path(target)
    if not (project / ".dvc").is_dir():
        raise WorkspaceError(
            f"{project} is not a DVC project (no .dvc/): run `dvc init` there, or pass the "
            "folder holding dvc.yaml and .dvc/"
        )
    cache_dir = dvc_cache_dir(project)
    root.mkdir(parents=True)
    manifest = {
        name: _copy_hashed(project / name, root / name) for name in snapshot_files(project, outputs)
    }
    params_path = root / PARAMS_FILE
    if params_path.is_file() and overrides:
        atomic_write_text(
            params_path,
            overridden_params_text(params_path.read_text(encoding="utf-8"), overrides),
        )
    _write_dvc_local_config(project, root, cache_dir)
    links: dict[str, str] = {}
    for rel in dict.fromkeys(shared):
        if not rel or Path(rel).is_absolute():
            continue
        source, link = project / rel, root / rel
        if link.exists() or link.is_symlink():
            continue  # copied with the snapshot (e.g. a dataset in git)
        if not source.exists():
            source.mkdir(parents=True, exist_ok=True)  # a cache folder not made yet
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=source.is_dir())
        links[rel] = str(source)
    atomic_write_text(
        root.parent / MANIFEST_FILE,
        json.dumps({"files": manifest, "links": links}, indent=1, sort_keys=True) + "\n",
    )
    return Workspace(root, project, manifest, manifest_digest(manifest), links)


def changed_since(project: str | Path, manifest: Mapping[str, str]) -> list[str]:
    """Files of ``manifest`` whose content in ``project`` differs now (or that are gone)."""
    project = Path(project)
    changed = []
    for name, digest in sorted(manifest.items()):
        path = project / name
        try:
            current = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            changed.append(name)
            continue
        if current != digest:
            changed.append(name)
    return changed
