"""The model-version description a reviewer reads on the MLflow version page (Markdown).

One function, :func:`version_description`, builds it at registration and again after the
promotion gate: the gate's verdict (or "not yet gated"), the recommended configuration
(dimension, bytes per vector), the per-dimension table (challenger, champion, baselines,
nDCG@10 and bytes per vector per m) and where the full report and the lineage live.

MLflow 3 stores the description in ``model_versions.description``, a ``VARCHAR(5000)``
(``mlflow/store/model_registry/dbmodels/models.py``; PostgreSQL and MySQL refuse longer
text). The text built here stays within :data:`DESCRIPTION_BUDGET`, leaving
:data:`APPENDIX_RESERVE` characters for a section appended later (the approval decision):
:func:`append_section` adds one within the limit. The description always ends with a
newline, so an appended section starts on a line of its own.

Example:
    >>> text = version_description(
    ...     title="matryoshka-adaptor v3", verdict="Promotion gate PASSED.",
    ...     recommended="`dim=64`", header=["m", "challenger"], rows=[["64", "0.61"]])
    >>> text.splitlines()[0], text.endswith("\\n")
    ('**matryoshka-adaptor v3**: Promotion gate PASSED.', True)
"""

from __future__ import annotations

from collections.abc import Sequence

MLFLOW_DESCRIPTION_LIMIT = 5000
APPENDIX_RESERVE = 1000
DESCRIPTION_BUDGET = MLFLOW_DESCRIPTION_LIMIT - APPENDIX_RESERVE
_VERDICT_CHARS = 1200  # a gate that failed at many sizes lists every one; keep the head
_ELLIPSIS = "…"


def _shorten(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + _ELLIPSIS


def _markdown_row(cells: Sequence[str]) -> str:
    # A literal "|" inside a cell would split it into two columns.
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def version_description(
    *,
    title: str,
    verdict: str,
    recommended: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    note: str = "",
    source: str = "",
    links: Sequence[str] = (),
    metric_label: str = "nDCG@10",
    budget: int = DESCRIPTION_BUDGET,
) -> str:
    """The Markdown description of a version, at most ``budget`` characters.

    Args:
        title: ``<model> v<N>`` (the first line, bold, followed by the verdict).
        verdict: the gate's summary, or a sentence saying it has not run yet.
        recommended: the recommended configuration (dimension and bytes).
        header / rows: the per-dimension table, one row per size m (cells as shown).
        note: what happened to the version (e.g. promoted to ``@champion`` at ...).
        source: where the numbers come from (one sentence).
        links: short lines on where the report and the lineage live.
        metric_label: the metric's name in the table heading.
        budget: the size limit; over it, the source sentence goes first, then table rows
            from the largest m (a line says how many are left out), then a hard cut.

    Returns:
        The description, ending with a newline.
    """
    head = [f"**{title}**: {_shorten(verdict, _VERDICT_CHARS)}", ""]
    if note:
        head += [_shorten(note, _VERDICT_CHARS), ""]
    head += [f"**Recommended configuration:** {recommended}", ""]
    table_head = [f"**{metric_label} per dimension**", "", _markdown_row(header)]
    table_head.append("|" + "---|" * len(header))
    body = [_markdown_row(row) for row in rows]
    legend = ["", "Bold m: the recommended dimension. Bytes: float32, m × 4 per vector."]
    tail = [*(["", source] if source else []), *(["", *links] if links else [])]

    def render(kept: int, with_source: bool) -> str:
        lines = [*head, *table_head, *body[:kept]]
        if kept < len(body):
            lines.append(
                f"_{len(body) - kept} more sizes left out (description size limit); "
                "the review report has every one._"
            )
        lines += legend
        lines += tail if with_source else [*(["", *links] if links else [])]
        return "\n".join(lines).rstrip() + "\n"

    text = render(len(body), True)
    if len(text) > budget:
        text = render(len(body), False)
    kept = len(body)
    while len(text) > budget and kept > 1:
        kept -= 1
        text = render(kept, False)
    if len(text) > budget:
        text = _shorten(text.rstrip(), budget - 1) + "\n"
    return text


def append_section(
    description: str | None, section: str, limit: int = MLFLOW_DESCRIPTION_LIMIT
) -> str:
    """``description`` with ``section`` appended after a blank line, within ``limit``
    characters (the section is shortened, never the existing text)."""
    base = (description or "").rstrip("\n")
    joint = "\n\n" if base else ""
    room = limit - len(base) - len(joint) - 1
    return base + joint + _shorten(section.strip("\n"), max(room, 0)) + "\n"
