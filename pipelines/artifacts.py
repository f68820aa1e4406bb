"""The retraining flow's Prefect artifacts (shown on the flow run's *Artifacts* tab).

Stable keys, so the Prefect UI's *Artifacts* page keeps one history per kind:

* ``retraining-report`` (Markdown): per-dimension table, the gate's verdict, MLflow links;
* ``retraining-metrics`` (table): every metric per method and size m;
* ``embedding-progress`` (progress): the embed stage's texts done, parsed from the
  stage's output lines (:func:`components.embedding.progress.parse_progress_line`).

Content is built in :mod:`components.tracking.flow_summary`; here it is only published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from components.embedding.progress import parse_progress_line

REPORT_KEY = "retraining-report"
METRICS_KEY = "retraining-metrics"
PROGRESS_KEY = "embedding-progress"
#: The texts the embed stage reports on, in order (each counts for an equal share).
EMBED_KINDS = ("corpus", "queries")


def publish_report(markdown: str, description: str) -> UUID:
    """The run's Markdown report (key ``retraining-report``)."""
    return create_markdown_artifact(markdown=markdown, key=REPORT_KEY, description=description)


def publish_metrics(rows: Sequence[Mapping[str, Any]], description: str) -> UUID:
    """The metric table (key ``retraining-metrics``)."""
    return create_table_artifact(
        table=[dict(row) for row in rows], key=METRICS_KEY, description=description
    )


class EmbeddingProgress:
    """The ``embedding-progress`` artifact, fed with the embed stage's output lines.

    Each kind (``corpus``, ``queries``) counts for an equal share, so the percentage only
    grows while the stage runs.

    Example:
        >>> progress = EmbeddingProgress()  # doctest: +SKIP
        >>> progress.feed("corpus: 20/40 texts (50%), 4.0 texts/s, ETA 0m05s")  # doctest: +SKIP
        >>> progress.finish()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.fractions: dict[str, float] = {}
        self.percent = 0.0
        self.artifact_id = create_progress_artifact(
            progress=0.0, key=PROGRESS_KEY, description="embedding: starting"
        )

    def feed(self, line: str) -> bool:
        """Update from one output line; True when it was a progress line."""
        point = parse_progress_line(line)
        if point is None or point.total <= 0:
            return False
        self.fractions[point.desc] = min(1.0, point.done / point.total)
        kinds = list(dict.fromkeys([*EMBED_KINDS, *self.fractions]))
        percent = 100.0 * sum(self.fractions.get(k, 0.0) for k in kinds) / len(kinds)
        self.percent = max(self.percent, round(percent, 1))
        update_progress_artifact(
            self.artifact_id,
            self.percent,
            description=f"embedding {point.desc}: {point.done}/{point.total} texts",
        )
        return True

    def finish(self, note: str = "embedding finished") -> None:
        """Set 100 % (the stage ended, ran or restored from the cache)."""
        self.percent = 100.0
        update_progress_artifact(self.artifact_id, 100.0, description=note)
