"""Shared plumbing of the pipeline stages: the output layout, atomic outputs, JSON.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("components.stages")

DEFAULT_RUNS_DIR = Path("runs")
HISTORY_FILE = "history.json"
ADAPTOR_DIR = "adaptor"


class StageError(RuntimeError):
    """A stage cannot run or failed for a reason the user can fix (missing input, bad
    params); the message says which file or key and what to do."""


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
