"""Shared plumbing of the pipeline stages: params, paths, atomic outputs, JSON.

Every stage writes its output directory atomically: the previous output is removed *first*
(so a failed run never leaves a stale result a later stage could consume), the new output
is assembled in a hidden sibling (``.<name>.partial-<token>``) and renamed into place only
when the stage succeeds. DVC removes non-persistent outputs before running a stage as well,
so a stage run by hand and a stage run by ``dvc repro`` behave the same.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from components.config import PipelineParams

if TYPE_CHECKING:
    from components.embedding import EmbeddingConfig
    from components.validation import ValidationConfig

log = logging.getLogger("components.stages")

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_RUNS_DIR = Path("runs")
HISTORY_FILE = "history.json"
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
ADAPTOR_DIR = "adaptor"


class StageError(RuntimeError):
    """A stage cannot run or failed for a reason the user can fix (missing input, bad
    params); the message says which file or key and what to do."""


class DatasetConfig(BaseModel):
    """The ``dataset:`` section of params.yaml.

    Attributes:
        path: dataset directory (BEIR layout or the plain user format).
        train_split: qrels split used by the supervised stage (``qrels/<split>.tsv``); a
            missing or empty split skips that stage.
        test_split: qrels split used by the evaluation stage (required there).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Path("data/scifact")
    train_split: str = "train"
    test_split: str = "test"


class RunLayout(BaseModel):
    """Where each stage writes, under one runs directory (default ``runs/``).

    The paths match the ``outs`` of ``dvc.yaml``; change both together.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path = DEFAULT_RUNS_DIR

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"


class ParamsError(StageError):
    """The params file or an override is missing or invalid (a usage error: exit code 2)."""


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=1"`` -> ``("a.b", 1)``; the value is read as a YAML scalar (``null``, ``true``,
    ``0.5``, ``[16, 32]``, ``text``).

    Raises:
        ValueError: no ``=``, an empty key, or a value that is not YAML.
    """
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(
            f"expected KEY=VALUE with a dotted key, e.g. method.train.seed=1; got {text!r}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    return key, value


def load_stage_params(
    path: str | Path | None = DEFAULT_PARAMS,
    overrides: Mapping[str, Any] | None = None,
    *,
    missing_ok: bool = False,
) -> PipelineParams:
    """Read params.yaml, apply dotted overrides and validate into :class:`PipelineParams`.

    Args:
        path: the params file (``None``: ``params.yaml``).
        overrides: ``{"method.train.seed": 1, ...}`` applied over the file.
        missing_ok: a missing file means built-in defaults instead of an error.

    Raises:
        ParamsError: the file is missing, not YAML, or a value is invalid (names the key).
    """
    import yaml

    params_path = Path(path) if path is not None else DEFAULT_PARAMS
    if params_path.is_file():
        try:
            raw = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{params_path}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise ParamsError(f"{params_path}: expected a mapping at the top level")
    elif missing_ok:
        raw = {}
    else:
        raise ParamsError(f"params file not found: {params_path}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ParamsError(f"--set {dotted}: '{key}' is not a section in {params_path}")
            node = child
        node[leaf] = value
    try:
        return PipelineParams.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{params_path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


def _section(params: PipelineParams, name: str) -> Any:
    extra = params.model_extra or {}
    return extra.get(name)


def dataset_config(params: PipelineParams) -> DatasetConfig:
    """The typed ``dataset:`` section (defaults when absent).

    Raises:
        ParamsError: an unknown key or a wrong type, naming ``dataset.<key>``.
    """
    section = _section(params, "dataset") or {}
    try:
        return DatasetConfig.model_validate(section)
    except ValidationError as exc:
        raise ParamsError(f"params, section 'dataset': {_describe(exc)}") from None


def embedding_config(params: PipelineParams) -> EmbeddingConfig:
    """The typed ``embedding:`` section (defaults when absent)."""
    from components.embedding import EmbeddingConfig

    section = _section(params, "embedding") or {}
    try:
        return EmbeddingConfig.model_validate(section)
    except ValidationError as exc:
        raise ParamsError(f"params, section 'embedding': {_describe(exc)}") from None


def validation_config(params: PipelineParams) -> ValidationConfig:
    """The typed ``validation:`` section (defaults when absent)."""
    from components.validation import validation_config_from_params

    try:
        return validation_config_from_params(params)
    except ValueError as exc:
        raise ParamsError(str(exc)) from None


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def write_json(path: Path, payload: Any) -> None:
    """Write strict JSON (NaN/inf as null) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps(_clean(payload), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file another stage wrote; a missing file says which stage to run."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{path}: missing; run the {what} stage first") from None
    except ValueError as exc:
        raise StageError(f"{path}: invalid JSON ({exc})") from None
