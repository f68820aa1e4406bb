"""What a retraining run shows outside MLflow: metric rows, MLflow links, a Markdown report.

Plain data and text (no Prefect here): ``pipelines/artifacts.py`` publishes them as the
flow run's Prefect artifacts (``retraining-report``, ``retraining-metrics``).

Example:
    >>> rows = metric_rows({"metrics": {"base": {"64": {"ndcg_at_10": 0.5}}}})
    >>> rows
    [{'method': 'base', 'dim': 64, 'ndcg_at_10': 0.5}]
    >>> mlflow_links("sqlite:///m.db", "1", "abc")["run"]
    'http://127.0.0.1:5000/#/experiments/1/runs/abc'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Where ``mlflow ui`` serves a file or SQLite store (its default address).
LOCAL_UI = "http://127.0.0.1:5000"


def metric_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per method and size m from an evaluation ``metrics.json``: ``method``,
    ``dim`` and every metric (rounded to 4 places), sorted by method then m."""
    rows: list[dict[str, Any]] = []
    for method, by_dim in (report.get("metrics") or {}).items():
        for dim in sorted(by_dim, key=int):
            values = by_dim[dim]
            rows.append(
                {
                    "method": method,
                    "dim": int(dim),
                    **{name: round(float(value), 4) for name, value in values.items()},
                }
            )
    return rows


def ui_base(tracking_uri: str) -> str:
    """The MLflow UI's address: the tracking server itself, else ``mlflow ui``'s default."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def mlflow_links(
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    model_name: str | None = None,
    version: str | int | None = None,
) -> dict[str, str]:
    """Addresses of the run's page and (when registered) the version's page."""
    base = ui_base(tracking_uri)
    links = {"run": f"{base}/#/experiments/{experiment_id}/runs/{run_id}"}
    if model_name and version is not None:
        links["version"] = f"{base}/#/models/{model_name}/versions/{version}"
    return links


def run_report_markdown(
    *,
    run: str,
    table: str,
    links: Mapping[str, str],
    stages: Mapping[str, str],
    verdict: str,
    gate: str | None = None,
    registered: Mapping[str, Any] | None = None,
) -> str:
    """The run's Markdown report: the per-dimension table, the gate's verdict (and its
    per-dimension summary), links to MLflow, the stage outcomes.

    Args:
        run: the pipeline run id.
        table: the evaluation's per-dimension Markdown table.
        links: from :func:`mlflow_links`.
        stages: stage → ``ran`` | ``cached`` | ``skipped``.
        verdict: one line: what the gate did.
        gate: the gate's per-dimension Markdown
            (:func:`components.registry.approval.gate_markdown`), when it ran.
        registered: ``{"model_name", "version", "new"}``, when registered.
    """
    lines = [f"# Retraining run {run}", "", "## Gate", "", f"**{verdict}**", ""]
    if gate:
        lines += [gate, ""]
    lines += ["## nDCG@10 per size m", "", table, "", "## Links", ""]
    lines.append(f"- MLflow run: [{links['run']}]({links['run']})")
    if "version" in links and registered:
        label = f"{registered['model_name']} v{registered['version']}"
        lines.append(f"- Model version: [{label}]({links['version']})")
    lines += ["", "Stages: " + ", ".join(f"{k} {v}" for k, v in stages.items())]
    return "\n".join(lines)


def _as_version(version: Any) -> str:
    return f"v{version}" if version else "none"


def gate_verdict(gate: Mapping[str, Any]) -> str:
    """One line on what the gate did, from a ``PromotionOutcome.to_dict()``.

    Example:
        >>> gate_verdict({"action": "promoted", "version": "3", "champion_before": "2",
        ...               "champion_after": "3", "message": "Promotion gate PASSED."})
        'v3 promoted: @champion v2 → v3. Promotion gate PASSED.'
    """
    action, version = gate.get("action"), gate.get("version")
    before = _as_version(gate.get("champion_before"))
    heads = {
        "promoted": f"v{version} promoted: @champion {before} → v{version}",
        "approved": f"v{version} approved: @champion {before} → v{version}",
        "rejected": f"v{version} rejected: @champion stays {before}",
        "timed_out": f"v{version} timed out waiting for approval: stays @challenger, "
        f"@champion stays {before}",
        "awaiting_approval": f"v{version} passed the gate: waiting for approval",
        "approved_stale": f"v{version} approved, but @champion moved to {before} while it "
        "waited: not promoted, stays @challenger",
        "dry_run": f"v{version} dry run: nothing moved (@champion {before})",
        "noop": f"v{version} already is @champion",
        "disabled": "gate disabled (registry.run_mode=disabled): nothing gated",
    }
    head = heads.get(str(action), f"{action}")
    message = str(gate.get("message") or "")
    return f"{head}. {message}" if message else head
