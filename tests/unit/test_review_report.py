"""The review a person reads: the HTML report's order (numbers and plot first, lineage
collapsed after them) and the version description (table per m, size limit, appending)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from components.registry.config import RegistryConfig
from components.registry.description import (
    DESCRIPTION_BUDGET,
    MLFLOW_DESCRIPTION_LIMIT,
    append_section,
    version_description,
)
from components.registry.gate import decide
from components.registry.report import build_review_report
from components.tracking.lineage import GitInfo, Lineage

DIMS = (16, 32, 64, 128)
TABLE = {
    "challenger": {16: 0.41, 32: 0.52, 64: 0.60, 128: 0.63},
    "champion": {16: 0.40, 32: 0.50, 64: 0.58, 128: 0.62},
    "base": {16: 0.20, 32: 0.35, 64: 0.50, 128: 0.60},
    "pca": {16: 0.30, 32: 0.42, 64: 0.55, 128: 0.61},
}
STAGE_HASHES = {
    stage: {"deps": {"data/scifact": f"{stage}-in.dir"}, "outs": {f"runs/{stage}": f"{stage}-out"}}
    for stage in ("validate", "embed", "pretrain", "finetune", "evaluate")
}


def metadata() -> dict:
    lineage = Lineage(
        git=GitInfo("c0ffee" * 6 + "abcd", "main", False),
        dvc_lock_digest="e" * 64,
        stages=STAGE_HASHES,
        dataset_fingerprint="f" * 64,
    )
    return {
        "provider": "local",
        "base_model": "all-MiniLM-L6-v2",
        "d": 384,
        "trained_dims": list(DIMS),
        "recommended_dim": 64,
        "dataset_fingerprint": "f" * 64,
        "git_commit": lineage.git.commit,
        "dvc_lock_digest": lineage.dvc_lock_digest,
        "lineage": lineage.to_dict(),
        "lineage_uri": "runs:/0123/lineage/lineage.json",
    }


def report(decision: bool = True):  # noqa: ANN201
    config = RegistryConfig()
    return build_review_report(
        model_name="matryoshka-adaptor",
        version=3,
        table=TABLE,
        baselines=["base", "pca"],
        metadata=metadata(),
        champion_version=2,
        decision=(
            decide(
                TABLE["challenger"],
                {b: TABLE[b] for b in ("base", "pca")},
                config,
                champion=TABLE["champion"],
                champion_version=2,
            )
            if decision
            else None
        ),
        source="Re-evaluated on scifact/test.",
    )


class Outline(HTMLParser):
    """Document order of the landmarks a reviewer sees, and where text sits."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, str | None]]] = []
        self.inside_details = 0
        self.text_outside_details: list[str] = []
        self.text_inside_details: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append((tag, dict(attrs)))
        if tag == "details":
            self.inside_details += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.inside_details -= 1

    def handle_data(self, data: str) -> None:
        target = self.text_inside_details if self.inside_details else self.text_outside_details
        target.append(data)

    def first(self, tag: str, **attrs: str) -> int:
        for index, (name, found) in enumerate(self.events):
            if name == tag and all(found.get(k) == v for k, v in attrs.items()):
                return index
        raise AssertionError(f"no <{tag} {attrs}> in the report")


def test_html_report_shows_numbers_and_plot_before_the_collapsed_lineage(tmp_path: Path) -> None:
    page = report().write(tmp_path)["html"].read_text(encoding="utf-8")
    outline = Outline()
    outline.feed(page)
    table = outline.first("table", id="per-dimension-table")
    plot = outline.first("img", id="plot")
    details = outline.first("details", id="lineage")
    assert table < plot < details
    assert outline.events[plot][1]["src"].startswith("data:image/png;base64,")
    assert "open" not in outline.events[details][1]  # collapsed until clicked
    assert outline.events[details + 1][0] == "summary"
    inside = " ".join(outline.text_inside_details)
    outside = " ".join(outline.text_outside_details)
    for stage, entry in STAGE_HASHES.items():
        for digest in (*entry["deps"].values(), *entry["outs"].values()):
            assert digest in inside and digest not in outside, (stage, digest)
    assert "e" * 64 in inside and "runs:/0123/lineage/lineage.json" in inside
    # The first screen: the verdict, the recommendation and a row per m with bytes.
    assert "Promotion gate PASSED" in outside
    first_screen = "".join(outline.text_outside_details)
    assert "configuration: dim=64: 256 B per vector, 256 MB per million vectors" in first_screen
    assert "(vs 1,536 B / 1.54 GB at d=384)" in first_screen
    assert "`" not in first_screen  # Markdown code marks became <code>
    assert all(f"{m * 4} B" in outside for m in DIMS)


def test_markdown_report_puts_lineage_last() -> None:
    markdown = report().markdown
    assert markdown.index("| **64** |") < markdown.index("ndcg_vs_dim.png")
    assert markdown.index("ndcg_vs_dim.png") < markdown.index("## Lineage")
    assert "finetune-out" in markdown[markdown.index("## Lineage") :]


def test_description_has_the_table_the_verdict_and_the_recommendation() -> None:
    text = report().description("Promoted to `@champion`.")
    lines = text.splitlines()
    assert lines[0].startswith("**matryoshka-adaptor v3**: Promotion gate PASSED")
    assert "Promoted to `@champion`." in lines
    assert "**Recommended configuration:** `dim=64`: 256 B per vector" in text
    header = next(line for line in lines if line.startswith("| m |"))
    assert "champion v2" in header and "| base | pca |" in header and "bytes / vector" in header
    for m in DIMS:
        (row,) = [line for line in lines if line.startswith((f"| {m} |", f"| **{m}** |"))]
        assert row.endswith("| pass |") and f"| {m * 4} B |" in row
    assert "runs:/0123/lineage/lineage.json" in text and "finetune-out" not in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    ungated = report(decision=False).description()
    assert "Not yet gated" in ungated.splitlines()[0]


def test_description_stays_within_the_limit_and_says_what_it_left_out() -> None:
    rows = [[str(m), "0.5000", "x" * 120] for m in range(1, 101)]
    text = version_description(
        title="m v1",
        verdict="Promotion gate FAILED: " + "; ".join(f"m={m}: too low" for m in range(400)),
        recommended="`dim=64`",
        header=["m", "challenger", "notes"],
        rows=rows,
        source="s" * 500,
        links=["- Lineage: `runs:/r/lineage/lineage.json`."],
    )
    assert len(text) <= DESCRIPTION_BUDGET and text.endswith("\n")
    assert "more sizes left out (description size limit)" in text
    assert "| 1 | 0.5000 |" in text and "| 100 | 0.5000 |" not in text
    assert "s" * 500 not in text  # the source sentence went first
    assert "- Lineage: `runs:/r/lineage/lineage.json`." in text
    assert "…" in text.splitlines()[0]  # the verdict was shortened, not dropped
    short = version_description(
        title="m v1", verdict="ok", recommended="`dim=8`", header=["m"], rows=[["8"]]
    )
    assert "left out" not in short


def test_an_appended_section_fits_the_mlflow_limit() -> None:
    text = report().description()
    approved = append_section(text, "**Approval:** approved by alice: looks good.")
    assert approved.startswith(text.rstrip("\n") + "\n\n**Approval:** approved by alice")
    assert approved.endswith("\n")
    huge = append_section(text, "comment " * 2000)
    assert len(huge) <= MLFLOW_DESCRIPTION_LIMIT and huge.startswith(text.rstrip("\n"))
    assert append_section(None, "first") == "first\n"
