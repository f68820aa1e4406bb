"""Register a pipeline run's adaptor as a new version (the "register" step).

Every successful run: log the pyfunc into the run, create a new version of the one
registered model tagged ``validation_status=pending``, point alias ``challenger`` at it, and
attach a first review report (challenger and baselines from the run's own evaluation, the
champion's numbers as logged by its own run; the gate re-evaluates all of them on one set).

Example:
    >>> from components.registry import register_run_model
    >>> mv = register_run_model(run_id, Path("runs/finetune/adaptor"),
    ...                         json.loads(Path("runs/evaluation/metrics.json").read_text()),
    ...                         {"git_commit": "abc123"},
    ...                         model_name="matryoshka-adaptor")  # doctest: +SKIP
    >>> mv.version, mv.tags["validation_status"]  # doctest: +SKIP
    ('3', 'pending')
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.baselines import BASELINE_NAMES
from components.registry.client import alias_version, registry_session
from components.registry.config import CHALLENGER, CHAMPION
from components.registry.load import version_metadata
from components.registry.packaging import build_model_metadata, log_adaptor_model
from components.registry.report import build_review_report
from components.tracking.lineage import DVC_LOCK_DIGEST_TAG, lineage_uri, read_run_lineage

log = logging.getLogger(__name__)

VALIDATION_STATUS = "validation_status"
PENDING, PASSED, FAILED = "pending", "passed", "failed"
REVIEW_TAG = "review_report"
LINEAGE_TAG = "lineage"
_MAX_TAG = 5000


# The searchable lineage on a version; the rest is in the run's lineage/lineage.json.
LINEAGE_TAGS = ("dataset_fingerprint", "git_commit", DVC_LOCK_DIGEST_TAG)


def version_tags(metadata: Mapping[str, Any], run_lineage_uri: str | None = None) -> dict[str, str]:
    """Model-version tags: ``validation_status=pending``, what the model is (provider, base
    model, d, sizes) and a few lineage tags (:data:`LINEAGE_TAGS` and ``lineage``, the
    address of the run's lineage document)."""
    tags = {VALIDATION_STATUS: PENDING}
    for key in ("provider", "base_model", "d", "recommended_dim", "adaptor_method", *LINEAGE_TAGS):
        if metadata.get(key) is not None:
            tags[key] = str(metadata[key])[:_MAX_TAG]
    tags["trained_dims"] = ",".join(str(m) for m in metadata.get("trained_dims") or [])
    if run_lineage_uri:
        tags[LINEAGE_TAG] = run_lineage_uri
    return tags


def ensure_registered_model(client: Any, model_name: str) -> None:
    """Create the registered model once, with a description of the lifecycle."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        try:
            client.create_registered_model(
                model_name,
                description=(
                    "Matryoshka-Adaptor over frozen embeddings. Aliases: `challenger` = newest "
                    "registered version, `champion` = what applications load. Each version "
                    "carries a review report (review/report.html). See docs/registry.md."
                ),
            )
        except MlflowException:
            client.get_registered_model(model_name)  # created concurrently


def logged_model_id(model_version: Any) -> str | None:
    """The LoggedModel id behind a version (``model_id``, else its ``models:/m-…`` source)."""
    model_id = getattr(model_version, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(getattr(model_version, "source", "") or "")
    if source.startswith("models:/m-"):
        return source[len("models:/") :].split("/")[0]
    return None


def attach_review_report(client: Any, model_version: Any, report: Any) -> str:
    """Log the report into the version's logged model (``review/``) and its run
    (``review/version-N/``); tag the version with where to find it."""
    with tempfile.TemporaryDirectory(prefix="review-") as tmp:
        report.write(tmp)
        model_id = logged_model_id(model_version)
        if model_id:
            client.log_model_artifacts(model_id, tmp, "review")
        location = f"review/version-{model_version.version}"
        if model_version.run_id:
            client.log_artifacts(model_version.run_id, tmp, location)
    value = f"runs:/{model_version.run_id}/{location}/report.html"
    client.set_model_version_tag(model_version.name, model_version.version, REVIEW_TAG, value)
    return value


def _champion_logged_numbers(
    client: Any, model_name: str, tmp: str, exclude: str
) -> tuple[str | None, dict[int, float] | None]:
    champion = alias_version(client, model_name, CHAMPION)
    if champion is None or str(champion.version) == str(exclude):
        return None, None
    try:
        meta = version_metadata(client, model_name, champion.version, tmp)
        values = (meta.get("ndcg_at_10") or {}).get(meta.get("adaptor_method") or "", {})
        return str(champion.version), {int(m): float(v) for m, v in values.items()}
    except Exception as exc:  # the report still helps without the champion column
        log.warning("champion v%s: no logged metrics for the report (%s)", champion.version, exc)
        return str(champion.version), None


def register_run_model(
    run_id: str,
    adaptor_dir: Path,
    evaluation_metrics: dict,
    metadata: dict,
    *,
    model_name: str,
    tracking_uri: str | None = None,
) -> Any:
    """Log the adaptor pyfunc into ``run_id`` and register it as the new ``@challenger``.

    Args:
        run_id: the pipeline run (running or finished) the model is logged into.
        adaptor_dir: the adaptor directory (``adaptor.json`` + ``adaptor.safetensors``).
        evaluation_metrics: the evaluate stage's ``metrics.json`` payload
            (``{"metrics": method → str(m) → metric → value, "recommended_dim": ...}``).
        metadata: provenance: ``provider``, ``base_model``, ``dataset_fingerprint``,
            ``git_commit``, ``dvc_lock_digest``, optionally ``trained_dims``,
            ``adaptor_method`` (default ``adaptor_supervised``, else
            ``adaptor_unsupervised``) and ``recommended_dim``; values missing here are
            taken from ``adaptor.json``. Never put secrets here: it is stored verbatim.
        model_name: the registered model.
        tracking_uri: the MLflow store (default: see
            :func:`components.registry.client.resolve_uri`).

    The full lineage is the run's ``lineage/lineage.json`` (logged by
    :meth:`components.tracking.PipelineRun.log_lineage`): the version's ``lineage`` tag
    points at it when the run has one, and the review report shows it.

    Returns:
        The new ``ModelVersion`` (tags include ``validation_status=pending``; alias
        ``challenger`` points at it; the description carries the per-dimension table).
    """
    with registry_session(tracking_uri) as client:
        meta = build_model_metadata(adaptor_dir, evaluation_metrics, metadata)
        lineage = read_run_lineage(client, run_id)
        run_lineage = lineage_uri(run_id) if lineage is not None else None
        info = log_adaptor_model(adaptor_dir, meta, run_id=run_id)
        ensure_registered_model(client, model_name)
        model_version = client.create_model_version(
            model_name,
            source=info.model_uri,
            run_id=run_id,
            tags=version_tags(meta, run_lineage),
            model_id=info.model_id,
            description=f"Registered from run {run_id}; the review follows.",
        )
        with tempfile.TemporaryDirectory(prefix="champion-meta-") as tmp:
            champion_version, champion_values = _champion_logged_numbers(
                client, model_name, tmp, model_version.version
            )
        table = {
            method: values
            for method, values in (
                (m, {int(k): float(v) for k, v in vals.items()})
                for m, vals in meta["ndcg_at_10"].items()
            )
        }
        challenger = table.pop(meta["adaptor_method"], {}) if meta["adaptor_method"] else {}
        report_table = {"challenger": challenger}
        if champion_values:
            report_table["champion"] = champion_values
        baselines = [b for b in BASELINE_NAMES if b in table]
        report_table.update({b: table[b] for b in baselines})
        report = build_review_report(
            model_name=model_name,
            version=model_version.version,
            table=report_table,
            baselines=baselines,
            metadata={**meta, "lineage": lineage, "lineage_uri": run_lineage},
            champion_version=champion_version if champion_values else None,
            source=(
                "Numbers from this run's evaluation; the champion's as logged by its own "
                "run. The promotion gate re-evaluates all of them on one frozen set."
            ),
        )
        attach_review_report(client, model_version, report)
        client.update_model_version(
            model_name,
            model_version.version,
            description=report.description(
                f"Registered from run `{run_id}` as the new `@{CHALLENGER}`."
            ),
        )
        # The alias moves last: a run killed before this point leaves a version that
        # discard_run_versions() removes, never a @challenger without its report.
        client.set_registered_model_alias(model_name, CHALLENGER, model_version.version)
        log.info(
            "registered %s v%s (@%s, validation_status=pending)",
            model_name,
            model_version.version,
            CHALLENGER,
        )
        return client.get_model_version(model_name, model_version.version)


def discard_run_versions(
    client: Any, model_name: str, run_id: str, previous_challenger: str | None = None
) -> list[str]:
    """Delete the versions a failed or killed run registered; restore ``@challenger``.

    A version must never outlive the run that made it when that run did not finish
    (its metrics, lineage or report may be missing). Deleting a version drops its aliases,
    so ``@challenger`` is pointed back at ``previous_challenger`` when that still exists.

    Returns:
        The deleted version numbers.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    except MlflowException:
        return []
    deleted = []
    for version in versions:
        client.delete_model_version(model_name, version.version)
        deleted.append(str(version.version))
        log.warning(
            "deleted %s v%s: registered by run %s, which did not finish",
            model_name,
            version.version,
            run_id,
        )
    if deleted and previous_challenger and alias_version(client, model_name, CHALLENGER) is None:
        try:
            client.set_registered_model_alias(model_name, CHALLENGER, previous_challenger)
        except MlflowException:
            log.warning("could not point @%s back at v%s", CHALLENGER, previous_challenger)
    return deleted
