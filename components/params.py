"""``params.yaml`` as one typed, frozen root: the only place the file is read or written.

Every section (``dataset``, ``method``, ``evaluation``, ``validation``, ``embedding``,
``registry``, ``mlflow``) is validated by its own frozen pydantic model with
``extra="forbid"``, so a typo anywhere (``method.train.sed``) fails when the params are
loaded, naming the key and the keys that exist, not halfway through a run. Overrides are
dotted keys (``--set method.train.seed=1``) applied by one function, :func:`apply_overrides`,
before validation.

Example:
    >>> params = load_params(None, {"method.train.seed": 3}, missing_ok=True)
    >>> params.method.train.seed, params.dataset.test_split
    (3, 'test')
    >>> load_params(None, {"method.train.sed": 3}, missing_ok=True)
    Traceback (most recent call last):
    ...
    components.params.ParamsError: params: method.train.sed: unknown key (did you mean 'seed'?)
"""

from __future__ import annotations

import copy
import difflib
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from components.config import EvaluationConfig, FrozenModel, MethodConfig
from components.embedding.config import EmbeddingConfig
from components.registry.config import RegistryConfig
from components.validation.config import ValidationConfig

PARAMS_FILE = Path("params.yaml")
DEFAULT_MODEL_NAME = "matryoshka-adaptor"
DEFAULT_EXPERIMENT = "matryoshka-adaptor"
# YAML 1.1 reads ``1e-4`` (no dot) as a string; an override meant it as a number.
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class ParamsError(ValueError):
    """The params file or an override is missing or invalid; the message names the key."""


class DatasetConfig(FrozenModel):
    """The ``dataset:`` section.

    Attributes:
        path: dataset directory (BEIR layout or the plain user format), relative to the
            project root or absolute.
        train_split: qrels split of the supervised stage (``qrels/<split>.tsv``); a missing
            or empty split skips that stage.
        test_split: qrels split of the evaluation stage and the promotion gate (required).
    """

    path: Path = Path("data/scifact")
    train_split: str = "train"
    test_split: str = "test"


class MlflowConfig(FrozenModel):
    """The ``mlflow:`` section (``MLFLOW_TRACKING_URI`` in the environment wins).

    Attributes:
        experiment_name: the experiment runs are logged to.
        registered_model_name: the Model Registry name (``registry.model_name`` wins).
        tracking_uri: the store; ``None`` = ``sqlite:///<project>/mlflow/mlflow.db``.
    """

    experiment_name: str = DEFAULT_EXPERIMENT
    registered_model_name: str = DEFAULT_MODEL_NAME
    tracking_uri: str | None = None


class PipelineParams(FrozenModel):
    """The whole of ``params.yaml``, one typed section per stage or service."""

    dataset: DatasetConfig = DatasetConfig()
    method: MethodConfig = MethodConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    validation: ValidationConfig = ValidationConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    registry: RegistryConfig = RegistryConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @property
    def model_name(self) -> str:
        """The registered model: ``registry.model_name``, else ``mlflow.registered_model_name``."""
        return self.registry.model_name or self.mlflow.registered_model_name


# --- overrides --------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=1"`` → ``("a.b", 1)``; the value is read as YAML (``null``, ``true``, ``0.5``,
    ``[16, 32]``, ``text``).

    Raises:
        ValueError: no ``=``, an empty key part, or a value that is not YAML.
    """
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
        value = float(value)
    return key, value


def apply_overrides(
    raw: Mapping[str, Any], overrides: Mapping[str, Any] | None, source: str = "params"
) -> dict[str, Any]:
    """A deep copy of ``raw`` with dotted-key ``overrides`` set (missing sections created).

    Raises:
        ParamsError: a key on the path is a value, not a section.
    """
    result: dict[str, Any] = copy.deepcopy(dict(raw))
    for dotted, value in (overrides or {}).items():
        node: dict[str, Any] = result
        *parents, leaf = str(dotted).split(".")
        for depth, key in enumerate(parents):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ParamsError(f"{source}: --set {dotted}: '{where}' is a value, not a section")
            node = child
        node[leaf] = value
    return result


# --- reading ----------------------------------------------------------------------------
def read_params_file(path: str | Path | None, *, missing_ok: bool = False) -> dict[str, Any]:
    """The parsed params file as plain data (``{}`` for a missing file when ``missing_ok``).

    Raises:
        ParamsError: missing (unless ``missing_ok``), not YAML, or not a mapping.
    """
    params_path = Path(path) if path is not None else PARAMS_FILE
    if not params_path.is_file():
        if missing_ok:
            return {}
        raise ParamsError(f"params file not found: {params_path}")
    try:
        raw = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{params_path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{params_path}: expected a mapping at the top level")
    return raw


def validate_params(raw: Mapping[str, Any], source: str = "params") -> PipelineParams:
    """Validate plain data into :class:`PipelineParams`.

    Raises:
        ParamsError: one line per problem, ``<source>: <dotted key>: <what is wrong>``.
    """
    try:
        return PipelineParams.model_validate(dict(raw))
    except ValidationError as exc:
        raise ParamsError("; ".join(describe_errors(exc, source))) from None


def load_params(
    path: str | Path | None = PARAMS_FILE,
    overrides: Mapping[str, Any] | None = None,
    *,
    missing_ok: bool = False,
) -> PipelineParams:
    """Read ``path``, apply dotted ``overrides`` and validate every section.

    Args:
        path: the params file (``None``: ``params.yaml``).
        overrides: ``{"method.train.seed": 1, ...}`` applied over the file.
        missing_ok: a missing file means the built-in defaults.

    Raises:
        ParamsError: the file is missing, not YAML, or a key/value is invalid.
    """
    source = str(path) if path is not None else "params"
    raw = read_params_file(path, missing_ok=missing_ok)
    return validate_params(apply_overrides(raw, overrides, source), source)


def describe_errors(exc: ValidationError, source: str = "params") -> list[str]:
    """``<source>: <dotted key>: <message>`` per error; unknown keys suggest a close match."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            message = (
                f"unknown key (did you mean '{close[0]}'?)"
                if close
                else f"unknown key; known keys here: {', '.join(known)}"
            )
        problems.append(f"{source}: {key}: {message}")
    return problems


def _known_keys(parents: list[str]) -> list[str]:
    """Field names of the model at ``parents`` (e.g. ``["method", "train"]``)."""
    model: type[BaseModel] = PipelineParams
    for part in parents:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# --- writing (a run's own copy of the file) ---------------------------------------------
def overridden_params_text(original: str, overrides: Mapping[str, Any]) -> str:
    """``original`` (a params.yaml text) with ``overrides`` set, comments and order kept.

    Used to write a run's workspace copy of params.yaml: DVC then hashes and records
    exactly the values the stages use. The user's own file is never written.
    """
    if not overrides:
        return original
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    editor = YAML()  # round-trip mode: comments, order and quoting survive
    editor.preserve_quotes = True
    editor.width = 4096
    data = editor.load(original) if original.strip() else None
    if data is None:
        data = CommentedMap()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if key not in node or node[key] is None:
                node[key] = CommentedMap()
            node = node[key]
        node[leaf] = value
    buffer = io.StringIO()
    editor.dump(data, buffer)
    return buffer.getvalue()


__all__ = [
    "PARAMS_FILE",
    "DatasetConfig",
    "MlflowConfig",
    "ParamsError",
    "PipelineParams",
    "apply_overrides",
    "describe_errors",
    "load_params",
    "overridden_params_text",
    "parse_override",
    "read_params_file",
    "validate_params",
]
