"""The review report a person reads in the MLflow UI before approving a version.

Markdown (``report.md``) and a self-contained HTML page (``report.html``, the plot embedded
as a PNG) with, per size m: challenger, champion and baseline nDCG@10, the differences,
storage per million vectors (float32: ``m × 4 bytes × 10⁶``), the gate's verdict when there
is one, and the recommended dimension.

Example:
    >>> from components.registry.report import storage_per_million, format_bytes
    >>> format_bytes(storage_per_million(64)), format_bytes(storage_per_million(384))
    ('256 MB', '1.54 GB')
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.registry.description import version_description
from components.registry.gate import GateDecision

BYTES_PER_FLOAT32 = 4


def storage_per_million(dim: int, bytes_per_value: int = BYTES_PER_FLOAT32) -> int:
    """Bytes that one million ``dim``-dimensional float32 vectors occupy."""
    return int(dim) * bytes_per_value * 1_000_000


def format_bytes(n: int) -> str:
    """Decimal units: ``256 B``, ``1,536 B``, ``256 MB``, ``1.54 GB``."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f} GB"
    if n >= 1_000_000:
        return f"{n / 1e6:.0f} MB"
    if n >= 10_000:
        return f"{n / 1e3:.0f} kB"
    return f"{n:,} B"  # bytes per vector: exact (1,536 B at d=384)


@dataclass(frozen=True)
class ReviewReport:
    """The rendered report: Markdown, HTML, the plot's PNG bytes and the inputs of the
    version description (:meth:`description`)."""

    title: str
    markdown: str
    html: str
    png: bytes = field(repr=False)
    description_inputs: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def description(self, note: str = "") -> str:
        """The version description (:func:`components.registry.description.
        version_description`) with ``note`` saying what happened to the version."""
        return version_description(**self.description_inputs, note=note)

    def write(self, directory: str | Path) -> dict[str, Path]:
        """``report.md``, ``report.html``, ``ndcg_vs_dim.png`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "markdown": out / "report.md",
            "html": out / "report.html",
            "plot": out / "ndcg_vs_dim.png",
        }
        paths["markdown"].write_text(self.markdown, encoding="utf-8")
        paths["html"].write_text(self.html, encoding="utf-8")
        paths["plot"].write_bytes(self.png)
        return paths


def _plot(
    table: Mapping[str, Mapping[int, float]],
    dims: Sequence[int],
    metric: str,
    recommended_dim: int | None,
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for method, values in table.items():
        xs = [m for m in dims if m in values]
        style = "-" if method in ("challenger", "champion") else "--"
        ax.plot(xs, [values[m] for m in xs], style, marker="o", label=method)
    if recommended_dim:
        ax.axvline(
            recommended_dim,
            color="grey",
            alpha=0.4,
            linestyle=":",
            label=f"recommended m={recommended_dim}",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(dims))
    ax.set_xticklabels([str(m) for m in dims])
    ax.set_xlabel("dimensions kept (m)")
    ax.set_ylabel(metric_label(metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def metric_label(metric: str) -> str:
    """``ndcg_at_10`` → ``nDCG@10`` (``mrr_at_10`` → ``MRR@10``)."""
    return metric.replace("_at_", "@").replace("ndcg", "nDCG").replace("mrr", "MRR")


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def lineage_sections(
    metadata: Mapping[str, Any],
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    """The lineage shown in the report's collapsed section: summary facts and one
    ``(stage, deps|outs, path, hash)`` row per ``dvc.lock`` entry.

    Read from ``metadata["lineage"]`` (the run's ``lineage.json``, see
    :mod:`components.tracking.lineage`); models registered before lineage documents
    existed carry ``dvc_hashes`` instead, shown as they are.
    """
    doc = metadata.get("lineage") or {}
    git = doc.get("git") or {}
    lock = doc.get("dvc_lock") or {}
    commit = git.get("commit") or metadata.get("git_commit")
    fingerprint = doc.get("dataset_fingerprint") or metadata.get("dataset_fingerprint")
    facts = [
        ("git commit", str(commit) + (" (uncommitted changes)" if git.get("dirty") else "")),
        ("git branch", str(git.get("branch") or "–")),
        ("dataset fingerprint", str(fingerprint)),
        ("dvc.lock sha256", str(lock.get("sha256") or metadata.get("dvc_lock_digest") or "–")),
        ("lineage document", str(metadata.get("lineage_uri") or "–")),
    ]
    hashes = [
        (str(stage), kind, str(item_path), str(digest))
        for stage, entry in (lock.get("stages") or {}).items()
        for kind in ("deps", "outs")
        for item_path, digest in (entry.get(kind) or {}).items()
    ]
    hashes += [("", "", str(k), str(v)) for k, v in (metadata.get("dvc_hashes") or {}).items()]
    return facts, hashes


def _short(value: Any, n: int = 12) -> str:
    text = str(value or "–")
    return text if len(text) <= n else text[:n]


def build_review_report(
    *,
    model_name: str,
    version: str | int,
    table: Mapping[str, Mapping[int, float]],
    baselines: Sequence[str],
    metadata: Mapping[str, Any],
    champion_version: str | int | None = None,
    decision: GateDecision | None = None,
    metric: str = "ndcg_at_10",
    source: str = "",
) -> ReviewReport:
    """Render the report (and the inputs of the version description).

    Args:
        model_name, version: the registered version under review.
        table: ``method → m → metric``; ``challenger`` is the version under review,
            ``champion`` the current champion (optional), the rest baselines.
        baselines: which methods of ``table`` are baselines.
        metadata: the model's metadata (provider, base model, d, trained sizes,
            recommended dimension, dataset fingerprint, git commit), with the run's
            lineage document under ``lineage`` and its address under ``lineage_uri``.
        champion_version: the champion's version number, when there is one.
        decision: the gate's decision, when the report is written by the gate.
        source: one sentence on where the numbers come from.
    """
    challenger = table.get("challenger", {})
    champion = table.get("champion")
    dims = sorted({int(m) for values in table.values() for m in values})
    recommended = metadata.get("recommended_dim")
    checks = {check.dim: check for check in decision.checks} if decision else {}
    present_baselines = [b for b in baselines if b in table]
    title = f"Review: {model_name} version {version}"
    label = metric_label(metric)
    header = ["m", "challenger"]
    if champion is not None:
        header += [f"champion v{champion_version}", "Δ vs champion"]
    header += present_baselines + ["Δ vs best baseline", "bytes / vector", "storage / 1M vectors"]
    if decision:
        header.append("gate")
    rows: list[list[str]] = []
    for m in dims:
        value = challenger.get(m)
        best = max((table[b][m] for b in present_baselines if m in table[b]), default=None)
        row = [f"**{m}**" if m == recommended else str(m), _fmt(value)]
        if champion is not None:
            other = champion.get(m)
            row += [
                _fmt(other),
                _fmt(None if value is None or other is None else value - other, True),
            ]
        row += [_fmt(table[b].get(m)) for b in present_baselines]
        row.append(_fmt(None if value is None or best is None else value - best, True))
        row.append(format_bytes(m * BYTES_PER_FLOAT32))
        row.append(format_bytes(storage_per_million(m)))
        if decision:
            check = checks.get(m)
            row.append("–" if check is None else ("pass" if check.passed else "FAIL"))
        rows.append(row)
    d = metadata.get("d")
    recommendation = (
        f"`dim={recommended}`: {format_bytes(recommended * BYTES_PER_FLOAT32)} per vector, "
        f"{format_bytes(storage_per_million(recommended))} per million vectors"
        + (
            f" (vs {format_bytes(int(d) * BYTES_PER_FLOAT32)} / "
            f"{format_bytes(storage_per_million(int(d)))} at d={d})"
            if d
            else ""
        )
        if recommended
        else "–"
    )
    facts = [
        ("registered model", f"{model_name} v{version}"),
        ("provider / base model", f"{metadata.get('provider')} / {metadata.get('base_model')}"),
        ("d (input dimension)", str(d)),
        ("trained sizes (allowed `dim`)", ", ".join(map(str, metadata.get("trained_dims") or []))),
        ("recommended dimension", recommendation),
    ]
    if "recommended_dim_on_set" in metadata:
        facts.append(
            (
                "smallest m reaching the target share of base full-d nDCG on this set",
                str(metadata["recommended_dim_on_set"]),
            )
        )
    lineage_facts, lineage_hashes = lineage_sections(metadata)
    verdict = (
        decision.summary()
        if decision
        else ("Not yet gated: run `matryoshka promote` (or the promotion deployment).")
    )
    md = [f"# {title}", "", f"**Gate:** {verdict}", ""]
    md += [f"**Recommended configuration:** {recommendation}", ""]
    if source:
        md += [source, ""]
    md += [
        f"## {label} per dimension",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += [
        "",
        "Bold m: the recommended dimension. Bytes: float32, m × 4 per vector "
        "(storage: m × 4 bytes × 10⁶).",
        "",
        f"![{label} versus m](ndcg_vs_dim.png)",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
    ]
    md += [f"| {k} | {v} |" for k, v in facts]
    md += ["", "## Lineage", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in lineage_facts]
    if lineage_hashes:
        md += ["", "| stage | kind | path | hash |", "|---|---|---|---|"]
        md += [f"| {s} | {k} | {p} | {h} |" for s, k, p, h in lineage_hashes]
    md.append("")
    png = _plot(table, dims, metric, recommended)
    markdown = "\n".join(md)
    html_page = _html(
        title,
        verdict,
        recommendation,
        source,
        facts,
        header,
        rows,
        png,
        decision is not None and not decision.passed,
        lineage_facts,
        lineage_hashes,
        label,
    )
    lock_digest = metadata.get("dvc_lock_digest") or (
        (metadata.get("lineage") or {}).get("dvc_lock") or {}
    ).get("sha256")
    links = [
        "- Full review (plot, model facts, lineage): `review/report.html` in this version's "
        "model artifacts (the `review_report` tag has its address).",
        f"- Lineage: `{metadata.get('lineage_uri') or '–'}` (git "
        f"`{_short(metadata.get('git_commit'))}`, dataset "
        f"`{_short(metadata.get('dataset_fingerprint'))}`, dvc.lock sha256 "
        f"`{_short(lock_digest)}`).",
    ]
    description_inputs = {
        "title": f"{model_name} v{version}",
        "verdict": verdict,
        "recommended": recommendation,
        "header": header,
        "rows": rows,
        "source": source,
        "links": links,
        "metric_label": label,
    }
    return ReviewReport(
        title=title,
        markdown=markdown,
        html=html_page,
        png=png,
        description_inputs=description_inputs,
    )


def _code(escaped: str) -> str:
    """Markdown inline code (`dim=64`) as <code> in already escaped HTML."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _html(
    title: str,
    verdict: str,
    recommendation: str,
    source: str,
    facts: list[tuple[str, str]],
    header: list[str],
    rows: list[list[str]],
    png: bytes,
    failed: bool,
    lineage_facts: list[tuple[str, str]],
    lineage_hashes: list[tuple[str, str, str, str]],
    metric_label: str,
) -> str:
    """The page: verdict, recommendation, per-dimension table and plot first (the first
    screen), then the model facts, then the lineage in a collapsed ``<details>``."""
    esc = html.escape

    def cell(text: str) -> str:
        bold = text.startswith("**") and text.endswith("**")
        inner = esc(text.strip("*"))
        return f"<td><b>{inner}</b></td>" if bold else f"<td>{inner}</td>"

    def pairs(items: list[tuple[str, str]]) -> str:
        cells = ((_code(esc(k)), _code(esc(v))) for k, v in items)
        return "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in cells)

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    hash_rows = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in entry) + "</tr>" for entry in lineage_hashes
    )
    hash_table = (
        '<table class="hashes"><tr><th>stage</th><th>kind</th><th>path</th><th>hash</th></tr>'
        f"{hash_rows}</table>"
        if lineage_hashes
        else ""
    )
    image = base64.b64encode(png).decode("ascii")
    colour = "#b00020" if failed else "#1b5e20"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1.5em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}th{{background:#f4f4f4}}.verdict{{color:{colour};font-weight:bold}}
.hashes td{{font-family:monospace;text-align:left}}summary{{cursor:pointer;font-weight:bold}}
</style></head><body><h1>{esc(title)}</h1>
<p class="verdict">{esc(verdict)}</p>
<p><b>Recommended configuration:</b> {_code(esc(recommendation))}</p>
<h2 id="per-dimension">{esc(metric_label)} per dimension</h2>
<table id="per-dimension-table"><tr>{head}</tr>{body}</table>
<p>Bold m: the recommended dimension. Bytes: float32, m × 4 per vector
(storage: m × 4 bytes × 10⁶). {esc(source)}</p>
<img id="plot" alt="{esc(metric_label)} versus m" src="data:image/png;base64,{image}">
<h2>Model</h2><table>{pairs(facts)}</table>
<details id="lineage"><summary>Lineage (git commit, dataset fingerprint, DVC hashes)</summary>
<table>{pairs(lineage_facts)}</table>{hash_table}</details>
</body></html>
"""
