"""One naming scheme for every MLflow metric the pipeline logs.

Evaluation metrics are ``{method}/{metric}/dim_{m}`` (e.g.
``adaptor_supervised/ndcg_at_10/dim_64``), the recommended dimension of a method is
``recommended_dim/{method}``, training curves are ``train/{stage}/{term}`` logged with
``step=``. The flow, the registry and any report use these functions, never f-strings of
their own, so a metric has exactly one name everywhere.

Example:
    >>> metric_key("adaptor_supervised", "ndcg_at_10", 64)
    'adaptor_supervised/ndcg_at_10/dim_64'
    >>> train_metric_key("pretrain", "loss")
    'train/pretrain/loss'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

RECOMMENDED_DIM_PREFIX = "recommended_dim"
TRAIN_PREFIX = "train"
# MLflow accepts letters, digits, "_", "-", ".", " ", ":" and "/" in metric names.
_UNSAFE = re.compile(r"[^\w\-. :/]")
# Per-step fields of a training history that are not loss terms.
_STEP_FIELDS = {"step", "iteration", "timestamp", "seconds", "time"}


def _safe(part: str) -> str:
    """A name component with characters MLflow rejects replaced by ``_``."""
    cleaned = _UNSAFE.sub("_", str(part).strip())
    if not cleaned:
        raise ValueError("metric name component is empty")
    return cleaned


def metric_key(method: str, metric: str, dim: int | str) -> str:
    """``{method}/{metric}/dim_{m}``, the name of one per-dimension evaluation metric."""
    return f"{_safe(method)}/{_safe(metric)}/dim_{int(dim)}"


def parse_metric_key(key: str) -> tuple[str, str, int]:
    """Inverse of :func:`metric_key`: ``(method, metric, dim)``; ValueError otherwise."""
    match = re.fullmatch(r"(?P<method>.+)/(?P<metric>[^/]+)/dim_(?P<dim>\d+)", key)
    if match is None:
        raise ValueError(
            f"not a per-dimension metric name: {key!r} (expected '{{method}}/{{metric}}/dim_{{m}}')"
        )
    return match["method"], match["metric"], int(match["dim"])


def recommended_dim_key(method: str) -> str:
    """``recommended_dim/{method}``: smallest m reaching the target share of base nDCG."""
    return f"{RECOMMENDED_DIM_PREFIX}/{_safe(method)}"


def train_metric_key(stage: str, term: str) -> str:
    """``train/{stage}/{term}``: a training-curve point (loss term or held-out score)."""
    return f"{TRAIN_PREFIX}/{_safe(stage)}/{_safe(term)}"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def evaluation_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Flat MLflow metrics from an evaluation ``metrics.json`` payload.

    Args:
        report: ``{"metrics": method → str(m) → metric → value, "recommended_dim":
            method → m | None, ...}`` as written by the evaluate stage.

    Returns:
        ``{metric_key(...): value}`` for every finite value, plus
        ``recommended_dim/{method}`` for every method with a recommendation (a method that
        never reaches the target gets no value rather than a fake one).
    """
    out: dict[str, float] = {}
    for method, per_dim in (report.get("metrics") or {}).items():
        for dim, values in per_dim.items():
            for metric, value in values.items():
                number = _finite(value)
                if number is not None:
                    out[metric_key(method, metric, dim)] = number
    for method, dim in (report.get("recommended_dim") or {}).items():
        if dim is not None:
            out[recommended_dim_key(method)] = float(dim)
    for name in ("base_full_ndcg",):
        number = _finite(report.get(name))
        if number is not None:
            out[f"{RECOMMENDED_DIM_PREFIX}/{name}"] = number
    return out


def training_metrics(
    stage: str, history: Mapping[str, Any], max_points: int | None = None
) -> Iterator[tuple[str, float, int]]:
    """``(key, value, step)`` points of one training stage's ``history.json``.

    Per-step loss terms become ``train/{stage}/{term}`` (with ``max_points``, every k-th
    step so that at most that many points per term remain, the last step always kept: a
    5000-step curve costs seconds to log and the full one is in ``history.json``);
    held-out evaluations (all of them) become
    ``train/{stage}/{score_name}`` (``heldout_score`` when the file does not name it); the
    summary's best iteration/score (top level or under ``summary``) become single points
    at step 0. Non-numeric and
    non-finite values are skipped.
    """
    nested = history.get("summary")
    summary: Mapping[str, Any] = nested if isinstance(nested, Mapping) else history
    score_name = str(summary.get("score_name") or history.get("score_name") or "heldout_score")
    steps = list(history.get("history") or [])
    if max_points is not None and len(steps) > max_points > 0:
        stride = -(-len(steps) // max_points)
        picked = steps[stride - 1 :: stride]
        if picked[-1] is not steps[-1]:
            picked.append(steps[-1])
        steps = picked
    for point in steps:
        step = int(point.get("step", point.get("iteration", 0)))
        for term, value in point.items():
            if term in _STEP_FIELDS:
                continue
            number = _finite(value)
            if number is not None:
                yield train_metric_key(stage, term), number, step
    for point in history.get("evaluations") or []:
        step = int(point.get("step", point.get("iteration", 0)))
        for term, value in point.items():
            if term in _STEP_FIELDS:
                continue
            name = score_name if term in ("score", "value") else term
            number = _finite(value)
            if number is not None:
                yield train_metric_key(stage, name), number, step
    for field in ("best_score", "best_iteration", "iterations", "refit_iterations", "seconds"):
        number = _finite(summary.get(field))
        if number is not None:
            yield train_metric_key(stage, field), number, 0
