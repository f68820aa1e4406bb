"""The stage graph, read from ``dvc.yaml``: the one definition the flow and ``dvc repro`` share.

:func:`load_stage_graph` parses ``dvc.yaml`` (with ``${...}`` references resolved from the
params, as DVC does) and orders the stages topologically: a stage depends on another when
one of its ``deps`` is, or lies inside, one of the other's ``outs`` (ties keep the file's
order). The flow turns each stage into a Prefect task; adding, removing or rewiring a stage
in ``dvc.yaml`` changes the flow with no code change.

Example:
    >>> [s.name for s in load_stage_graph("dvc.yaml")]  # doctest: +SKIP
    ['validate', 'embed', 'pretrain', 'finetune', 'evaluate']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

_REF = re.compile(r"\$\{\s*([^}]+?)\s*\}")


class StageGraphError(ValueError):
    """``dvc.yaml`` is missing, malformed, or its stages form a cycle."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of ``dvc.yaml``.

    Attributes:
        name: stage name (also the Prefect task name).
        cmd: the command DVC runs (one string; a list of commands is joined with ``&&``).
        deps: dependency paths.
        outs: output paths (``outs``, ``metrics`` and ``plots`` that are files/folders).
        params: params keys the stage declares.
        upstream: names of the stages it depends on.
    """

    name: str
    cmd: str
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    upstream: tuple[str, ...] = field(default=())


def _lookup(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(dotted)
    return node


def resolve_refs(value: str, params: Mapping[str, Any], where: str) -> str:
    """Substitute ``${a.b}`` with ``params['a']['b']`` (DVC's templating, params only)."""

    def replace(match: re.Match[str]) -> str:
        try:
            found = _lookup(params, match[1])
        except KeyError:
            raise StageGraphError(
                f"{where}: ${{{match[1]}}} is not defined in the params"
            ) from None
        return str(found)

    return _REF.sub(replace, value)


def _paths(entries: Any, params: Mapping[str, Any], where: str) -> list[str]:
    """Paths of a deps/outs/metrics/plots list (strings or single-key mappings)."""
    paths: list[str] = []
    for entry in entries or []:
        if isinstance(entry, str):
            paths.append(resolve_refs(entry, params, where))
        elif isinstance(entry, Mapping):
            paths.extend(resolve_refs(str(key), params, where) for key in entry)
    return paths


def _param_keys(entries: Any) -> list[str]:
    keys: list[str] = []
    for entry in entries or []:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, Mapping):
            for values in entry.values():
                keys.extend(str(v) for v in values or [])
    return keys


def _norm(path: str) -> PurePosixPath:
    return PurePosixPath(path.replace("\\", "/").rstrip("/") or ".")


def _inside(dep: str, out: str) -> bool:
    d, o = _norm(dep), _norm(out)
    return d == o or o in d.parents or d in o.parents


def load_stage_graph(
    dvc_yaml: str | Path = "dvc.yaml", params: Mapping[str, Any] | None = None
) -> list[StageSpec]:
    """Stages of ``dvc_yaml`` in a topological order (file order among independents).

    Args:
        dvc_yaml: the pipeline file.
        params: values for ``${...}`` references (default: ``params.yaml`` beside it, plus
            the file's own ``vars`` mappings).

    Raises:
        StageGraphError: the file is missing or malformed, a reference is undefined, a
            ``foreach``/``matrix`` stage is used, or the stages form a cycle.
    """
    path = Path(dvc_yaml)
    if not path.is_file():
        raise StageGraphError(f"{path}: not found; the flow runs the stages that dvc.yaml defines")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StageGraphError(f"{path}: not valid YAML ({exc})") from None
    stages = raw.get("stages") if isinstance(raw, Mapping) else None
    if not isinstance(stages, Mapping) or not stages:
        raise StageGraphError(f"{path}: no 'stages:' mapping")
    if params is None:
        from components.params import PARAMS_FILE, read_params_file

        params = read_params_file(path.parent / PARAMS_FILE, missing_ok=True)
    context: dict[str, Any] = dict(params)
    for item in raw.get("vars") or []:
        if isinstance(item, Mapping):
            context.update(item)

    specs: list[StageSpec] = []
    for name, body in stages.items():
        where = f"{path}, stage '{name}'"
        if not isinstance(body, Mapping) or "cmd" not in body:
            raise StageGraphError(f"{where}: expected a mapping with a 'cmd'")
        if "foreach" in body or "matrix" in body:
            raise StageGraphError(f"{where}: foreach/matrix stages are not supported by the flow")
        cmd = body["cmd"]
        cmd = " && ".join(cmd) if isinstance(cmd, list) else str(cmd)
        outs = [
            *_paths(body.get("outs"), context, where),
            *_paths(body.get("metrics"), context, where),
            *_paths(body.get("plots"), context, where),
        ]
        specs.append(
            StageSpec(
                name=str(name),
                cmd=resolve_refs(cmd, context, where),
                deps=tuple(_paths(body.get("deps"), context, where)),
                outs=tuple(dict.fromkeys(outs)),
                params=tuple(_param_keys(body.get("params"))),
            )
        )
    return _toposort(specs, path)


def stage_outputs(stages: list[StageSpec]) -> list[str]:
    """Every output path of ``stages`` (``outs``, ``metrics``, ``plots``), in order."""
    return list(dict.fromkeys(out for stage in stages for out in stage.outs))


def _toposort(specs: list[StageSpec], path: Path) -> list[StageSpec]:
    producers = {s.name: s.outs for s in specs}
    upstream: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        ups = [
            other
            for other, outs in producers.items()
            if other != spec.name and any(_inside(dep, out) for dep in spec.deps for out in outs)
        ]
        upstream[spec.name] = tuple(ups)
    ordered: list[StageSpec] = []
    done: set[str] = set()
    pending = list(specs)
    while pending:
        ready = [s for s in pending if set(upstream[s.name]) <= done]
        if not ready:
            cycle = ", ".join(s.name for s in pending)
            raise StageGraphError(f"{path}: the stages {cycle} depend on each other (cycle)")
        stage = ready[0]
        ordered.append(
            StageSpec(
                stage.name, stage.cmd, stage.deps, stage.outs, stage.params, upstream[stage.name]
            )
        )
        done.add(stage.name)
        pending.remove(stage)
    return ordered
