"""A person's decision on a gated challenger (``registry.run_mode: approval``).

In ``approval`` mode :func:`components.registry.promotion.promote` decides as usual; a pass
tags the version ``approval_decision=pending`` and moves nothing. The retraining flow then
pauses (Prefect's human-in-the-loop input, ``pipelines/approval.py``), showing
:func:`gate_markdown`; the answer is recorded here, with no Prefect involved:

* ``approved``: ``@champion`` moves to the version (``validation_status=passed``,
  ``previous_champion``, ``promoted_at``);
* ``rejected``: ``@champion`` stays; ``validation_status=rejected``;
* ``timed_out``: nobody answered in ``registry.approval_timeout_s``; the version stays
  ``@challenger`` with ``validation_status=pending``;
* an approval after ``@champion`` moved (another promotion or a rollback while the run
  waited) promotes nothing: the gate compared against another champion. The version stays
  ``@challenger``, tagged ``approval_outcome=approved_stale`` (action ``approved_stale``).

Every decision sets the tags ``approval_decision``, ``approval_reviewer``,
``approval_comment``, ``approval_at`` and appends an "Approval" section to the version's
description (:func:`components.registry.description.append_section`: the existing text is
kept, the whole within MLflow's 5000 characters).

Example:
    >>> outcome = record_approval("matryoshka-adaptor", "3", "approved",
    ...                           reviewer="ana", comment="better at m=64")  # doctest: +SKIP
    >>> outcome.action, outcome.champion_after  # doctest: +SKIP
    ('approved', '3')
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from components.registry.client import alias_version, registry_session, require_version
from components.registry.config import CHAMPION
from components.registry.description import append_section
from components.registry.gate import GateDecision
from components.registry.register import PASSED, VALIDATION_STATUS

log = logging.getLogger(__name__)

APPROVAL_DECISION = "approval_decision"
APPROVAL_REVIEWER = "approval_reviewer"
APPROVAL_COMMENT = "approval_comment"
APPROVAL_AT = "approval_at"
PENDING, APPROVED, REJECTED, TIMED_OUT = "pending", "approved", "rejected", "timed_out"
#: The ``@champion`` version (or ``none``) the gate compared against when it asked.
GATED_AGAINST = "approval_gated_against"
#: Set to ``stale`` when an approval could not promote because ``@champion`` had moved.
APPROVAL_OUTCOME = "approval_outcome"
STALE = "approved_stale"
#: ``validation_status`` of a version a person rejected (the gate itself passed it).
HUMAN_REJECTED = "rejected"
# MLflow's SQL store caps tag values at 5000 characters (enforced by PostgreSQL).
_MAX_TAG = 5000

ApprovalDecision = Literal["approved", "rejected", "timed_out"]


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def gate_markdown(decision: GateDecision, model_name: str, version: str | int) -> str:
    """The gate's per-dimension summary as Markdown (the approval form's description and the
    run's Prefect artifact).

    Example:
        >>> from components.registry.gate import DimensionCheck, GateDecision
        >>> check = DimensionCheck(64, 0.71, None, 0.65, "pca", 0.0)
        >>> print(gate_markdown(GateDecision((check,), "ndcg_at_10", False), "m", 2))
        ... # doctest: +ELLIPSIS
        ### m v2: gate PASSED
        ...
    """
    verdict = "PASSED" if decision.passed else "FAILED"
    champion = f"champion v{decision.champion_version}" if decision.has_champion else "champion"
    lines = [
        f"### {model_name} v{version}: gate {verdict}",
        "",
        decision.summary(),
        "",
        f"| m | challenger | {champion} | Δ champion | best baseline | Δ baseline | floor "
        "| result |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for check in decision.checks:
        baseline = _fmt(check.best_baseline)
        if check.best_baseline_method:
            baseline += f" ({check.best_baseline_method})"
        lines.append(
            f"| {check.dim} | {_fmt(check.challenger)} | {_fmt(check.champion)} "
            f"| {_fmt(check.delta_vs_champion, True)} | {baseline} "
            f"| {_fmt(check.delta_vs_baseline, True)} | {check.floor:.4f} "
            f"| {'pass' if check.passed else 'FAIL'} |"
        )
    lines += ["", f"Metric: `{decision.metric}`."]
    return "\n".join(lines)


def approval_section(
    decision: ApprovalDecision, reviewer: str, comment: str, at: str, champion: str | None
) -> str:
    """The Markdown appended to the version description for one decision."""
    if decision == TIMED_OUT:
        head = f"**timed out** at {at}: nobody approved or rejected; still @challenger."
    else:
        head = f"**{decision}** by {reviewer or 'unknown'} at {at}."
        if decision == APPROVED:
            head += f" @{CHAMPION}: {f'v{champion}' if champion else 'none'} → this version."
    section = ["### Approval", "", head]
    if comment:
        section += ["", "> " + comment.strip().replace("\n", "\n> ")]
    return "\n".join(section)


def record_approval(
    model_name: str,
    version: str | int,
    decision: ApprovalDecision,
    *,
    reviewer: str = "",
    comment: str = "",
    tracking_uri: str | None = None,
) -> Any:
    """Record a person's answer on ``version`` (gated in ``approval`` mode) and act on it.

    Args:
        model_name: the registered model.
        version: the version the gate passed (tagged ``approval_decision=pending``).
        decision: ``approved`` (``@champion`` moves), ``rejected`` or ``timed_out``.
        reviewer / comment: who decided and why (tags and description).
        tracking_uri: the MLflow store.

    Returns:
        The :class:`components.registry.promotion.PromotionOutcome` (action ``approved``,
        ``rejected`` or ``timed_out``).

    Raises:
        ValueError: the version is not waiting for approval (never gated in ``approval``
            mode, or already decided).
    """
    from components.registry.promotion import PromotionOutcome, set_champion, utc_now

    with registry_session(tracking_uri) as client:
        target = require_version(client, model_name, version)
        name, number = model_name, str(target.version)
        state = (target.tags or {}).get(APPROVAL_DECISION)
        if state != PENDING:
            raise ValueError(
                f"{name} v{number} is not waiting for approval (tag {APPROVAL_DECISION}="
                f"{state or 'unset'}): gate it with registry.run_mode=approval first"
            )
        champion = alias_version(client, name, CHAMPION)
        before = str(champion.version) if champion else None
        at = utc_now()
        tags = {
            APPROVAL_DECISION: decision,
            APPROVAL_REVIEWER: reviewer[:_MAX_TAG],
            APPROVAL_COMMENT: comment[:_MAX_TAG],
            APPROVAL_AT: at,
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, number, key, value)
        after = before
        gated_against = (target.tags or {}).get(GATED_AGAINST)
        stale = decision == APPROVED and gated_against not in (None, before or "none")
        if stale:
            client.set_model_version_tag(name, number, APPROVAL_OUTCOME, STALE)
            log.warning(
                "%s v%s: approved, but @%s moved from %s to %s while waiting: not promoted",
                name,
                number,
                CHAMPION,
                gated_against,
                f"v{before}" if before else "none",
            )
        elif decision == APPROVED:
            set_champion(client, name, number, before, reason=f"approved by {reviewer}")
            client.set_model_version_tag(name, number, VALIDATION_STATUS, PASSED)
            after = number
        elif decision == REJECTED:
            client.set_model_version_tag(name, number, VALIDATION_STATUS, HUMAN_REJECTED)
        section = approval_section(decision, reviewer, comment, at, before)
        if stale:
            section += (
                f"\n\nNot promoted: `@{CHAMPION}` moved from "
                f"{'v' + gated_against if gated_against != 'none' else 'none'} to "
                f"{'v' + before if before else 'none'} while this run waited, so the gate's "
                "comparison no longer holds; still `@challenger`. Gate it again "
                "(`matryoshka promote`)."
            )
        description = append_section(target.description, section)
        client.update_model_version(name, number, description=description)
        log.info("%s v%s: %s by %s", name, number, decision, reviewer or "nobody")
        who = f" by {reviewer}" if reviewer else ""
        return PromotionOutcome(
            action=STALE if stale else decision,
            model_name=name,
            version=number,
            champion_before=before,
            champion_after=after,
            message=f"v{number} {decision.replace('_', ' ')}{who}"
            + (f": {comment}" if comment else ""),
        )
