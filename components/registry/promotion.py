"""The promotion gate's side effects, and rollback (the "promote" step).

:func:`promote` re-evaluates the challenger, the current ``@champion`` and the baselines on
one frozen evaluation set, decides with :func:`components.registry.gate.decide`, attaches a
review report to the challenger, then, by ``run_mode``:

* ``disabled``: nothing is evaluated or changed;
* ``dry_run``: decides, logs and tags ``gate_dry_run=passed|failed``; never moves an alias
  or the ``validation_status``;
* ``approval``: decides like ``enabled``; a pass tags ``approval_decision=pending`` and
  moves nothing (action ``awaiting_approval``): the retraining flow then pauses for a person
  and records the answer with :func:`components.registry.approval.record_approval`; a fail
  is a rejection as in ``enabled``;
* ``enabled``: pass → ``champion`` moves to the challenger, which is tagged
  ``validation_status=passed``, ``previous_champion`` and ``promoted_at``; fail → the champion
  is untouched, the version is tagged ``validation_status=failed``.

After an ``enabled`` gate the version's description is rewritten with the re-evaluated
per-dimension table, the verdict (which size failed by how much) and the outcome.

Example:
    >>> from components.params import load_params
    >>> from components.registry import promote, load_evaluation_set
    >>> outcome = promote("matryoshka-adaptor",
    ...                   load_evaluation_set("runs/embeddings", "data/scifact", "test"),
    ...                   load_params("params.yaml").registry)  # doctest: +SKIP
    >>> outcome.action, outcome.champion_after  # doctest: +SKIP
    ('promoted', '3')
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from components.baselines import baseline_names
from components.registry.client import alias_version, registry_session, require_version
from components.registry.config import CHALLENGER, CHAMPION, RegistryConfig
from components.registry.evaluation_set import EvaluationSet, compare_on_set
from components.registry.gate import GateDecision, counted_dims, decide
from components.registry.load import load_version_adaptor
from components.registry.register import (
    FAILED,
    PASSED,
    VALIDATION_STATUS,
    attach_review_report,
)
from components.registry.report import ReviewReport, build_review_report
from components.tracking.lineage import lineage_uri, read_run_lineage

log = logging.getLogger(__name__)

PREVIOUS_CHAMPION = "previous_champion"
PROMOTED_AT = "promoted_at"
DRY_RUN_TAG = "gate_dry_run"
EXIT_OK, EXIT_REJECTED = 0, 1


PromotionAction = Literal[
    "promoted",
    "rejected",
    "dry_run",
    "disabled",
    "noop",
    "rolled_back",
    "awaiting_approval",
    "approved",
    "timed_out",
    "approved_stale",
]


@dataclass(frozen=True, kw_only=True)
class PromotionOutcome:
    """What the gate (or a rollback) did.

    Attributes:
        action: ``promoted``, ``rejected``, ``dry_run``, ``disabled``, ``noop`` (the
            challenger already is the champion), ``rolled_back``, or in ``approval`` mode
            ``awaiting_approval`` (gate passed, a person decides), then ``approved``
            (``@champion`` moved), ``rejected``, ``timed_out`` or ``approved_stale``
            (approved after ``@champion`` moved: nothing promoted).
        version: the version gated (or rolled back to).
        champion_before / champion_after: ``@champion`` before and after (None: none).
        decision: the gate's decision (None when disabled, noop or rollback).
        report: the review report written for the version.
    """

    action: PromotionAction
    model_name: str
    version: str | None
    champion_before: str | None
    champion_after: str | None
    decision: GateDecision | None = None
    report: ReviewReport | None = None
    message: str = ""

    @property
    def exit_code(self) -> int:
        """0, or 1 when an enabled gate rejected the challenger."""
        return EXIT_REJECTED if self.action == "rejected" else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "model_name": self.model_name,
            "version": self.version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "message": self.message,
            "decision": self.decision.to_dict() if self.decision else None,
        }


def utc_now() -> str:
    """Now, as the ISO timestamp the registry's tags carry."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _values(report: Any, method: str, metric: str) -> dict[int, float]:
    rows = report.table[report.table["method"] == method]
    return {int(r.dim): float(getattr(r, metric)) for r in rows.itertuples(index=False)}


def evaluate_candidates(
    client: Any,
    model_name: str,
    challenger_version: str,
    champion_version: str | None,
    data: EvaluationSet,
    config: RegistryConfig,
    evaluation: Any | None = None,
) -> tuple[GateDecision, dict[str, dict[int, float]], dict[str, Any]]:
    """Re-evaluate challenger, champion and baselines on ``data`` and decide.

    Returns:
        The decision, the table ``method → m → metric`` and the challenger's metadata.
    """
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
        challenger, meta = load_version_adaptor(client, model_name, challenger_version, tmp)
        if challenger.dim != data.dim:
            raise ValueError(
                f"{model_name} v{challenger_version} expects d={challenger.dim} "
                f"embeddings but the evaluation set has d={data.dim}"
            )
        adaptors: dict[str, Any] = {"challenger": challenger}
        champion_meta: dict[str, Any] | None = None
        if champion_version is not None:
            champion, champion_meta = load_version_adaptor(
                client, model_name, champion_version, tmp
            )
            if champion.dim != data.dim:
                raise ValueError(
                    f"champion v{champion_version} expects d={champion.dim} embeddings, the "
                    f"evaluation set has d={data.dim}: a new base model changes what "
                    "applications send; register it under a new model name"
                )
            adaptors["champion"] = champion
    dims = counted_dims(config, meta.get("trained_dims") or [challenger.dim])
    if champion_meta is not None and config.dims is None:
        dims = [m for m in dims if m in set(champion_meta.get("trained_dims") or dims)]
    baselines = baseline_names(config.baselines)
    report = compare_on_set(data, adaptors, dims, baselines, evaluation)
    metric = config.metric
    table = {name: _values(report, name, metric) for name in dict.fromkeys(report.table["method"])}
    decision = decide(
        table["challenger"],
        {b: table[b] for b in baselines},
        config,
        champion=table.get("champion"),
        dims=dims,
        champion_version=champion_version,
    )
    on_set = report.recommended_dims().get("challenger")
    run_id = client.get_model_version(model_name, challenger_version).run_id
    lineage = read_run_lineage(client, run_id)
    meta = {
        **meta,
        "recommended_dim_on_set": on_set,
        "lineage": lineage,
        "lineage_uri": lineage_uri(run_id) if lineage is not None else None,
    }
    return decision, table, meta


def promote(
    model_name: str,
    data: EvaluationSet,
    config: RegistryConfig,
    *,
    version: int | str | None = None,
    tracking_uri: str | None = None,
    evaluation: Any | None = None,
    report_dir: str | Path | None = None,
) -> PromotionOutcome:
    """Run the promotion gate for ``version`` (default: ``@challenger``).

    Args:
        model_name: the registered model.
        data: the frozen evaluation set (see :func:`load_evaluation_set`).
        config: thresholds and ``run_mode``.
        version: the version to gate (default: the ``challenger`` alias).
        tracking_uri: the MLflow store.
        evaluation: an :class:`components.config.EvaluationConfig` for the cut-offs.
        report_dir: also write the review report here.
    """
    with registry_session(tracking_uri) as client:
        champion = alias_version(client, model_name, CHAMPION)
        champion_before = str(champion.version) if champion else None
        if config.run_mode == "disabled":
            log.info("promotion gate disabled (registry.run_mode=disabled): nothing done")
            return PromotionOutcome(
                action="disabled",
                model_name=model_name,
                version=None,
                champion_before=champion_before,
                champion_after=champion_before,
                message="registry.run_mode is disabled",
            )
        if version is None:
            target = alias_version(client, model_name, CHALLENGER)
            if target is None:
                raise LookupError(
                    f"registered model '{model_name}' has no @{CHALLENGER}: "
                    "register a run first (or pass --version)"
                )
        else:
            target = require_version(client, model_name, version)
        candidate = str(target.version)
        if candidate == champion_before:
            message = f"v{candidate} already is @{CHAMPION}: nothing to gate"
            log.info(message)
            return PromotionOutcome(
                action="noop",
                model_name=model_name,
                version=candidate,
                champion_before=champion_before,
                champion_after=champion_before,
                message=message,
            )
        decision, table, meta = evaluate_candidates(
            client, model_name, candidate, champion_before, data, config, evaluation
        )
        report = build_review_report(
            model_name=model_name,
            version=candidate,
            table=table,
            baselines=list(baseline_names(config.baselines)),
            metadata=meta,
            champion_version=champion_before,
            decision=decision,
            metric=config.metric,
            source=(
                f"Re-evaluated on the frozen evaluation set {data.name} "
                f"({len(data.corpus_ids)} documents, {len(data.query_ids)} queries, "
                f"fingerprint {data.fingerprint}) in run_mode={config.run_mode}."
            ),
        )
        if report_dir is not None:
            report.write(report_dir)
        attach_review_report(client, target, report)
        _log_decision(client, target, decision, config, table)
        log.info("%s v%s: %s", model_name, candidate, decision.summary())
        if config.run_mode == "dry_run":
            client.set_model_version_tag(
                model_name, candidate, DRY_RUN_TAG, "passed" if decision.passed else "failed"
            )
            return PromotionOutcome(
                action="dry_run",
                model_name=model_name,
                version=candidate,
                champion_before=champion_before,
                champion_after=champion_before,
                decision=decision,
                report=report,
                message=f"dry run: {decision.summary()}",
            )
        if decision.passed and config.run_mode == "approval":
            from components.registry.approval import APPROVAL_DECISION, GATED_AGAINST, PENDING

            client.set_model_version_tag(model_name, candidate, APPROVAL_DECISION, PENDING)
            # The approval is for this comparison: if @champion moves while a person
            # decides, approving must not promote a version that never beat the new one.
            client.set_model_version_tag(
                model_name, candidate, GATED_AGAINST, champion_before or "none"
            )
            client.update_model_version(
                model_name,
                candidate,
                description=report.description(
                    f"Waiting for a person's approval in the Prefect UI "
                    f"(`{APPROVAL_DECISION}={PENDING}`); `@{CHAMPION}` unchanged "
                    f"({'v' + champion_before if champion_before else 'none'}) until then."
                ),
            )
            return PromotionOutcome(
                action="awaiting_approval",
                model_name=model_name,
                version=candidate,
                champion_before=champion_before,
                champion_after=champion_before,
                decision=decision,
                report=report,
                message=f"{decision.summary()} Waiting for a person's approval.",
            )
        if decision.passed:
            set_champion(client, model_name, candidate, champion_before, reason="gate passed")
            client.set_model_version_tag(model_name, candidate, VALIDATION_STATUS, PASSED)
            client.update_model_version(
                model_name,
                candidate,
                description=report.description(
                    f"Promoted to `@{CHAMPION}` at {utc_now()} "
                    f"(previous champion: {'v' + champion_before if champion_before else 'none'})."
                ),
            )
            return PromotionOutcome(
                action="promoted",
                model_name=model_name,
                version=candidate,
                champion_before=champion_before,
                champion_after=candidate,
                decision=decision,
                report=report,
                message=decision.summary(),
            )
        client.set_model_version_tag(model_name, candidate, VALIDATION_STATUS, FAILED)
        client.update_model_version(
            model_name,
            candidate,
            description=report.description(
                f"Not promoted: `validation_status=failed`, `@{CHAMPION}` unchanged "
                f"({'v' + champion_before if champion_before else 'none'})."
            ),
        )
        return PromotionOutcome(
            action="rejected",
            model_name=model_name,
            version=candidate,
            champion_before=champion_before,
            champion_after=champion_before,
            decision=decision,
            report=report,
            message=decision.summary(),
        )


def _log_decision(
    client: Any,
    target: Any,
    decision: GateDecision,
    config: RegistryConfig,
    table: dict[str, dict[int, float]],
) -> None:
    """The decision as JSON in the version's run (``review/version-N/gate.json``) and the
    re-evaluated values as metrics ``gate_{method}/{metric}/dim_{m}`` (the pipeline's
    naming, :func:`components.tracking.naming.metric_key`)."""
    if not target.run_id:
        return
    from mlflow.entities import Metric

    from components.tracking.naming import metric_key

    stamp = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [
        Metric(metric_key(f"gate_{method}", config.metric, m), value, stamp, 0)
        for method, values in table.items()
        for m, value in values.items()
    ]
    if metrics:
        client.log_batch(target.run_id, metrics=metrics)
    payload = {**decision.to_dict(), "run_mode": config.run_mode, "checked_at": utc_now()}
    client.log_text(
        target.run_id,
        json.dumps(payload, indent=2, sort_keys=True),
        f"review/version-{target.version}/gate.json",
    )


def set_champion(
    client: Any, model_name: str, version: str, previous: str | None, reason: str
) -> None:
    client.set_registered_model_alias(model_name, CHAMPION, version)
    client.set_model_version_tag(model_name, version, PREVIOUS_CHAMPION, previous or "none")
    client.set_model_version_tag(model_name, version, PROMOTED_AT, utc_now())
    client.set_model_version_tag(model_name, version, "promotion_reason", reason)
    log.info(
        "%s: @%s moved %s → v%s (%s)",
        model_name,
        CHAMPION,
        f"v{previous}" if previous else "none",
        version,
        reason,
    )


def rollback(
    model_name: str, version: int | str, *, tracking_uri: str | None = None, force: bool = False
) -> PromotionOutcome:
    """Move ``@champion`` back to ``version`` (which gets ``previous_champion`` and
    ``promoted_at`` tags). A version the gate marked ``failed`` needs ``force=True``."""
    with registry_session(tracking_uri) as client:
        target = require_version(client, model_name, version)
        champion = alias_version(client, model_name, CHAMPION)
        before = str(champion.version) if champion else None
        target_version = str(target.version)
        if target_version == before:
            return PromotionOutcome(
                action="noop",
                model_name=model_name,
                version=target_version,
                champion_before=before,
                champion_after=before,
                message=f"v{target_version} already is @{CHAMPION}",
            )
        if target.tags.get(VALIDATION_STATUS) == FAILED and not force:
            verdict = (target.description or "").strip().splitlines()[:1]  # the gate's line
            raise ValueError(
                f"{model_name} v{target_version} failed the promotion gate "
                f"({''.join(verdict).replace('*', '')}); pass force=True (--force) to serve "
                "it anyway"
            )
        set_champion(
            client,
            model_name,
            target_version,
            before,
            reason=f"rollback from v{before}" if before else "rollback",
        )
        if before is not None:
            client.set_model_version_tag(model_name, before, "rolled_back_at", utc_now())
        return PromotionOutcome(
            action="rolled_back",
            model_name=model_name,
            version=target_version,
            champion_before=before,
            champion_after=target_version,
            message=f"@{CHAMPION}: v{before} → v{target_version}",
        )


def review_version(
    model_name: str,
    version: int | str,
    data: EvaluationSet,
    config: RegistryConfig,
    *,
    tracking_uri: str | None = None,
    evaluation: Any | None = None,
    out_dir: str | Path | None = None,
    attach: bool = True,
) -> ReviewReport:
    """Re-evaluate ``version`` against ``@champion`` and the baselines on ``data`` and write
    its review report (attached to the version unless ``attach=False``). The report shows
    what the gate would decide; nothing else changes."""
    with registry_session(tracking_uri) as client:
        target = require_version(client, model_name, version)
        champion = alias_version(client, model_name, CHAMPION)
        champion_version = (
            str(champion.version)
            if champion and str(champion.version) != str(target.version)
            else None
        )
        decision, table, meta = evaluate_candidates(
            client, model_name, str(target.version), champion_version, data, config, evaluation
        )
        role = (
            f"v{target.version} is the current @{CHAMPION}"
            if champion_version is None and champion is not None
            else "what the promotion gate would decide"
        )
        report = build_review_report(
            model_name=model_name,
            version=target.version,
            table=table,
            baselines=list(baseline_names(config.baselines)),
            metadata=meta,
            champion_version=champion_version,
            decision=decision,
            metric=config.metric,
            source=(
                f"Re-evaluated on {data.name} ({len(data.query_ids)} queries, fingerprint "
                f"{data.fingerprint}); gate column: {role}."
            ),
        )
        if out_dir is not None:
            report.write(out_dir)
        if attach:
            attach_review_report(client, target, report)
        return report
