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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.registry.gate import GateDecision

BYTES_PER_FLOAT32 = 4


def storage_per_million(dim: int, bytes_per_value: int = BYTES_PER_FLOAT32) -> int:
    """Bytes that one million ``dim``-dimensional float32 vectors occupy."""
    return int(dim) * bytes_per_value * 1_000_000


def format_bytes(n: int) -> str:
    """Decimal units: ``256 MB``, ``1.54 GB``."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f} GB"
    if n >= 1_000_000:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e3:.0f} kB"


@dataclass(frozen=True)
class ReviewReport:
    """The rendered report: Markdown, HTML and the plot's PNG bytes."""

    title: str
    markdown: str
    html: str
    png: bytes = field(repr=False)

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
    ax.set_ylabel(metric.replace("_at_", "@"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


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
    """Render the report.

    Args:
        model_name, version: the registered version under review.
        table: ``method → m → metric``; ``challenger`` is the version under review,
            ``champion`` the current champion (optional), the rest baselines.
        baselines: which methods of ``table`` are baselines.
        metadata: the model's metadata (provider, base model, d, trained sizes,
            recommended dimension, dataset fingerprint, git commit, DVC hashes).
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
    header = ["m", "challenger"]
    if champion is not None:
        header += [f"champion v{champion_version}", "Δ vs champion"]
    header += present_baselines + ["Δ vs best baseline", "storage / 1M vectors"]
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
        row.append(format_bytes(storage_per_million(m)))
        if decision:
            check = checks.get(m)
            row.append("–" if check is None else ("pass" if check.passed else "FAIL"))
        rows.append(row)
    d = metadata.get("d")
    facts = [
        ("registered model", f"{model_name} v{version}"),
        ("provider / base model", f"{metadata.get('provider')} / {metadata.get('base_model')}"),
        ("d (input dimension)", str(d)),
        ("trained sizes (allowed `dim`)", ", ".join(map(str, metadata.get("trained_dims") or []))),
        (
            "recommended dimension",
            f"{recommended}"
            + (
                f" ({format_bytes(storage_per_million(recommended))} per million vectors vs "
                f"{format_bytes(storage_per_million(d))} at d={d})"
                if recommended and d
                else ""
            ),
        ),
        ("dataset fingerprint", str(metadata.get("dataset_fingerprint"))),
        ("git commit", str(metadata.get("git_commit"))),
        (
            "DVC hashes",
            ", ".join(f"{k}: {v}" for k, v in (metadata.get("dvc_hashes") or {}).items()) or "–",
        ),
    ]
    if "recommended_dim_on_set" in metadata:
        on_set = (
            "smallest m reaching the target share of base full-d nDCG on this set",
            str(metadata["recommended_dim_on_set"]),
        )
        facts.insert(5, on_set)
    verdict = (
        decision.summary()
        if decision
        else ("Not yet gated: run `matryoshka promote` (or the promotion deployment).")
    )
    md = [f"# {title}", "", f"**Gate:** {verdict}", ""]
    if source:
        md += [source, ""]
    md += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts] + [""]
    md += [
        f"## {metric.replace('_at_', '@')} per dimension",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += [
        "",
        "Bold m: the recommended dimension. Storage: float32, m × 4 bytes × 10⁶.",
        "",
        "![nDCG@10 versus m](ndcg_vs_dim.png)",
        "",
    ]
    png = _plot(table, dims, metric, recommended)
    markdown = "\n".join(md)
    html_page = _html(
        title,
        verdict,
        source,
        facts,
        header,
        rows,
        png,
        decision is not None and not decision.passed,
    )
    return ReviewReport(title=title, markdown=markdown, html=html_page, png=png)


def _html(
    title: str,
    verdict: str,
    source: str,
    facts: list[tuple[str, str]],
    header: list[str],
    rows: list[list[str]],
    png: bytes,
    failed: bool,
) -> str:
    esc = html.escape

    def cell(text: str) -> str:
        bold = text.startswith("**") and text.endswith("**")
        inner = esc(text.strip("*"))
        return f"<td><b>{inner}</b></td>" if bold else f"<td>{inner}</td>"

    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    image = base64.b64encode(png).decode("ascii")
    colour = "#b00020" if failed else "#1b5e20"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}th{{background:#f4f4f4}}.verdict{{color:{colour};font-weight:bold}}</style>
</head><body><h1>{esc(title)}</h1>
<p class="verdict">{esc(verdict)}</p><p>{esc(source)}</p>
<table>{fact_rows}</table>
<h2>nDCG@10 per dimension</h2><table><tr>{head}</tr>{body}</table>
<p>Bold m: the recommended dimension. Storage: float32, m × 4 bytes × 10⁶.</p>
<img alt="nDCG@10 versus m" src="data:image/png;base64,{image}">
</body></html>
"""
