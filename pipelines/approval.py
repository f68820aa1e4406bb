"""Human-in-the-loop approval of a gated challenger (``registry.run_mode: approval``).

When the gate passes, :func:`await_approval` pauses the flow run with Prefect's
``pause_flow_run(wait_for_input=ApprovalInput)``: the Prefect UI shows the run as *Paused*
with a **Resume** button and a form (approve, reviewer, comment) under the gate's
per-dimension summary. The answer is recorded in the MLflow version by
:func:`components.registry.approval.record_approval`; no answer within
``registry.approval_timeout_s`` records ``timed_out``.

From code or a script (what the tests do)::

    from prefect.flow_runs import resume_flow_run
    resume_flow_run(flow_run_id, run_input={"approve": True, "reviewer": "ana",
                                            "comment": "better at m=64"})
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from components.registry.approval import APPROVED, REJECTED, TIMED_OUT, record_approval

#: Seconds between the paused flow's checks for an answer.
POLL_INTERVAL_S = 5


class ApprovalInput(RunInput):
    """The form a person fills in to resume a paused retraining run.

    Attributes:
        approve: true moves ``@champion`` to the challenger; false leaves it.
        reviewer: who decided (the ``approval_reviewer`` tag).
        comment: why (``approval_comment`` tag and the version description).
    """

    approve: bool
    reviewer: str
    comment: str = ""


def await_approval(
    model_name: str,
    version: str,
    champion: str | None,
    summary: str,
    timeout_s: int,
    tracking_uri: str,
) -> Any:
    """Pause the current flow run until a person approves or rejects ``version``.

    Args:
        model_name / version: the version the gate passed (``awaiting_approval``).
        champion: the current ``@champion`` version (None: none), shown in the form.
        summary: the gate's per-dimension Markdown
            (:func:`components.registry.approval.gate_markdown`).
        timeout_s: how long to wait (``registry.approval_timeout_s``).
        tracking_uri: the MLflow store of the version.

    Returns:
        The recorded ``PromotionOutcome`` (``approved``, ``rejected`` or ``timed_out``).
    """
    logger = get_run_logger()
    description = (
        f"{summary}\n\n**Approve or reject {model_name} v{version}.** Approving moves "
        f"@champion (now: {f'v{champion}' if champion else 'none'}) to it. The run waits "
        f"{timeout_s} s, then leaves it as @challenger (approval_decision=timed_out)."
    )
    logger.info(
        "%s v%s passed the gate: waiting up to %d s for approval in the Prefect UI",
        model_name,
        version,
        timeout_s,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description),
            timeout=timeout_s,
            poll_interval=min(POLL_INTERVAL_S, timeout_s),
        )
    except FlowPauseTimeout:
        logger.warning(
            "no answer in %d s: %s v%s stays @challenger", timeout_s, model_name, version
        )
        _resume_after_timeout(f"approval of {model_name} v{version} timed out")
        return record_approval(model_name, version, TIMED_OUT, tracking_uri=tracking_uri)
    decided = record_approval(
        model_name,
        version,
        APPROVED if answer.approve else REJECTED,
        reviewer=answer.reviewer,
        comment=answer.comment,
        tracking_uri=tracking_uri,
    )
    logger.info("%s", decided.message)
    return decided


def _resume_after_timeout(message: str) -> None:
    """Put the timed-out paused run back to ``Running``. Without it Prefect ends the run
    ``Failed`` ("completed and never resumed") although training, registration and the gate
    succeeded; the timeout is a recorded outcome, not an error. Forced: Prefect's rules
    refuse to resume an expired pause."""
    from prefect import get_client
    from prefect.context import FlowRunContext
    from prefect.states import Running

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(message=message), force=True)
