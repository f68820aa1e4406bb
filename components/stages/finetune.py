"""Stage ``finetune``: stage 2 of the adaptor (Eq. 6) from the pretrained adaptor, with the
training labels of ``qrels/<dataset.train_split>.tsv`` (never the test split).

Output ``runs/finetune/``: ``adaptor/`` and ``history.json`` like ``pretrain``. Without
training labels (no such file, or an empty one) the stage logs ``supervised stage skipped:
...`` and writes only ``history.json`` with ``"skipped": true``; the DVC output is the
``runs/finetune`` directory, so it exists either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from components.atomic import staged_directory
from components.layout import ADAPTOR_DIR, DEFAULT_LAYOUT, HISTORY_FILE
from components.params import PipelineParams
from components.stages.common import StageError, load_matching_inputs, write_json
from components.stages.pretrain import TrainingOutput, adaptor_metadata, history_payload, published

log = logging.getLogger("components.stages.finetune")

SKIP_MESSAGE = "supervised stage skipped: dataset has no training labels (qrels/{split}.tsv)"


def run_finetune(
    dataset_dir: str | Path,
    embeddings_dir: str | Path,
    pretrain_dir: str | Path,
    params: PipelineParams,
    out_dir: str | Path = DEFAULT_LAYOUT.finetune,
) -> TrainingOutput:
    """Stage 2: continue from the pretrained adaptor with the training labels.

    Uses ``qrels/<dataset.train_split>.tsv`` only (never the test split). Without it, or
    when it is empty, logs ``supervised stage skipped: ...`` and writes ``history.json``
    with ``"skipped": true`` and no ``adaptor/``.

    Raises:
        StageError: missing inputs, embeddings of other data, or too few labelled queries.
        DataFormatError: the dataset cannot be read.
    """
    from components.adaptor import load_adaptor, save_adaptor
    from components.training import train_supervised

    split = params.dataset.train_split
    out = Path(out_dir)
    with staged_directory(out, clear_first=True) as staging:
        artifacts, dataset = load_matching_inputs(embeddings_dir, dataset_dir)
        labels = dataset.qrels.get(split)
        if labels is None or labels.empty:
            message = SKIP_MESSAGE.format(split=split)
            log.warning(message)
            write_json(
                staging / HISTORY_FILE,
                {"stage": "finetune", "skipped": True, "reason": message, "train_split": split},
            )
            skipped = True
        else:
            skipped = False
            adaptor_path = Path(pretrain_dir) / ADAPTOR_DIR
            if not (adaptor_path / "adaptor.json").is_file():
                raise StageError(
                    f"{adaptor_path}: no pretrained adaptor; run the pretrain stage first"
                )
            start, _ = load_adaptor(adaptor_path, expected_dim=artifacts.dimensions)
            try:
                adaptor, result = train_supervised(
                    artifacts.corpus,
                    artifacts.corpus_ids,
                    artifacts.queries,
                    artifacts.query_ids,
                    labels,
                    params.method,
                    start,
                )
            except ValueError as exc:
                raise StageError(f"finetune: {exc}") from None
            metadata = adaptor_metadata(
                artifacts.meta, params.method, artifacts.dimensions, "finetune", result
            )
            metadata["train_split"] = split
            save_adaptor(adaptor, staging / ADAPTOR_DIR, metadata)
            write_json(staging / HISTORY_FILE, history_payload("finetune", result, metadata))
    if skipped:
        return TrainingOutput(out, out / HISTORY_FILE, None, None, {})
    return published("finetune", out, result, metadata)
