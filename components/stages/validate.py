"""Stage ``validate``: Great Expectations suites over the dataset (corpus, queries, qrels).

Output ``runs/validation/``: the GX results, ``summary.txt``, ``report.json`` and Data Docs,
and, only when every suite passed, ``passed.json`` (written last). ``passed.json`` holds the
dataset's name and content fingerprint and nothing run-specific, so it is byte-identical
across re-runs on the same data: DVC's ``embed`` stage depends on it, not on the GX
artifacts (which carry timestamps), and tightening a threshold re-validates without
re-embedding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from components.atomic import remove_path
from components.layout import DEFAULT_LAYOUT, PASSED_FILE
from components.params import PipelineParams
from components.stages.common import write_json

if TYPE_CHECKING:
    from components.validation import ValidationReport

log = logging.getLogger("components.stages.validate")


def run_validate(
    dataset_dir: str | Path,
    params: PipelineParams,
    out_dir: str | Path = DEFAULT_LAYOUT.validation,
    *,
    build_docs: bool | None = None,
) -> ValidationReport:
    """Validate a dataset directory; write the artifacts to ``out_dir``.

    Args:
        dataset_dir: BEIR layout or user-format dataset directory.
        params: pipeline params (the ``validation:`` section gives the thresholds).
        out_dir: artifact directory, replaced atomically.
        build_docs: render GX Data Docs; ``None`` = ``validation.build_data_docs``.

    Returns:
        The passing report.

    Raises:
        DataValidationError: a suite failed (malformed file, duplicate ids, empty texts,
            unknown qrels ids, bad scores...); the message names file, row and field. The
            artifacts are still written (for inspection) but ``passed.json`` is not.
    """
    from components.data import DataFormatError, load_dataset
    from components.validation import DataValidationError, validate_dataset

    config = params.validation
    if build_docs is not None:
        config = config.model_copy(update={"build_data_docs": build_docs})
    dataset_dir, out = Path(dataset_dir), Path(out_dir)
    remove_path(out)  # a stale passed.json must not survive a failed run
    try:
        dataset = load_dataset(dataset_dir)
    except DataFormatError:
        # The runner re-reads the directory and reports the parse error as a failed suite.
        report = validate_dataset(dataset_dir, config, out)
    else:
        report = validate_dataset(dataset, config, out, root=dataset_dir)
    if not report.success:
        raise DataValidationError(report)
    write_json(
        out / PASSED_FILE,
        {
            "dataset": dataset.name,
            "path": dataset_dir.as_posix(),
            "fingerprint": dataset.fingerprint(),
            "corpus": len(dataset.corpus),
            "queries": len(dataset.queries),
            "qrels": {split: len(frame) for split, frame in sorted(dataset.qrels.items())},
            "suites": sorted(s.name for s in report.suites),
        },
    )
    log.info("validation passed: %s (%d suites) -> %s", dataset.name, len(report.suites), out)
    return report
