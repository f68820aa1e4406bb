"""Where every stage output lives: the one answer for ``runs/``.

:class:`RunLayout` is used by the stages (where they write), the CLI (``--runs-dir``), the
flow and MLflow logging (what they read and log), the registry (the frozen evaluation set)
and run workspaces (what is never copied). ``dvc.yaml``'s ``outs`` must equal
:meth:`RunLayout.dvc_outs` (``tests/unit/test_dvc_deps.py`` checks it).

Example:
    >>> layout = RunLayout()
    >>> layout.finetune_adaptor.as_posix(), layout.metrics_json.as_posix()
    ('runs/finetune/adaptor', 'runs/evaluation/metrics.json')
    >>> RunLayout().under("/ws").embeddings.as_posix()
    '/ws/runs/embeddings'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

DEFAULT_RUNS_DIR = Path("runs")
ADAPTOR_DIR = "adaptor"
HISTORY_FILE = "history.json"
PASSED_FILE = "passed.json"
SUMMARY_FILE = "summary.txt"
META_FILE = "meta.json"
VALIDATION_SUBDIR = "validation"  # a stage's own GX artifacts (embed: the embeddings suite)
METRICS_FILE = "metrics.json"  # the evaluation's numbers (DVC metrics)
LONG_CSV = "metrics.csv"  # method, dim, every metric
PLOT_PNG = "ndcg_vs_dim.png"
TABLE_TXT = "table.txt"  # the printable per-dimension table
WIDE_CSV = "ndcg_vs_dim.csv"  # dim + one nDCG column per method (DVC plots)
#: The evaluate stage's files besides ``metrics.json``, as ``dvc.yaml`` lists them.
EVALUATION_FILES = (LONG_CSV, PLOT_PNG, TABLE_TXT, WIDE_CSV)


class RunLayout(BaseModel):
    """Paths of the stage outputs under one runs directory (default ``runs/``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path = DEFAULT_RUNS_DIR

    def under(self, base: str | Path) -> RunLayout:
        """The same layout inside ``base`` (a project or a run's workspace)."""
        return RunLayout(root=Path(base) / self.root)

    # --- one folder per stage ----------------------------------------------------------
    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    # --- files other steps read --------------------------------------------------------
    @property
    def validation_passed(self) -> Path:
        """Written last, only when every suite passed (what ``embed`` depends on)."""
        return self.validation / PASSED_FILE

    @property
    def embeddings_meta(self) -> Path:
        return self.embeddings / META_FILE

    @property
    def embeddings_validation(self) -> Path:
        """The GX embeddings suite's artifacts, inside the embed stage's output."""
        return self.embeddings / VALIDATION_SUBDIR

    @property
    def validation_summary(self) -> Path:
        return self.validation / SUMMARY_FILE

    @property
    def pretrain_adaptor(self) -> Path:
        return self.pretrain / ADAPTOR_DIR

    @property
    def finetune_adaptor(self) -> Path:
        return self.finetune / ADAPTOR_DIR

    def history(self, stage: str) -> Path:
        """``history.json`` of a training stage (``pretrain`` or ``finetune``)."""
        return self.root / stage / HISTORY_FILE

    @property
    def metrics_json(self) -> Path:
        return self.evaluation / METRICS_FILE

    def review(self, version: int | str) -> Path:
        """Where ``matryoshka review-report`` writes a version's report (not a DVC output)."""
        return self.root / "review" / f"v{version}"

    def dvc_outs(self) -> list[Path]:
        """Every path ``dvc.yaml`` declares as an output, in stage order."""
        return [
            self.validation,
            self.embeddings,
            self.pretrain,
            self.finetune,
            *(self.evaluation / name for name in EVALUATION_FILES),
            self.metrics_json,
        ]


#: The layout under ``runs/`` of the current folder: the stages' default outputs.
DEFAULT_LAYOUT = RunLayout()
