"""The frozen evaluation set the gate scores every candidate on, and the comparison itself.

Challenger, champion and baselines are all re-evaluated here on the same embeddings and
labels: numbers logged by different runs (other data, other code) are never compared.

Example:
    >>> from components.registry.evaluation_set import load_evaluation_set
    >>> data = load_evaluation_set("runs/embeddings", "data/scifact", "test")  # doctest: +SKIP
    >>> report = compare_on_set(data, {"challenger": adaptor}, dims=[64, 128])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class EvaluationSet:
    """Base embeddings of corpus and queries, their ids, and the evaluation labels."""

    corpus: np.ndarray = field(repr=False)
    corpus_ids: list[str] = field(repr=False)
    queries: np.ndarray = field(repr=False)
    query_ids: list[str] = field(repr=False)
    qrels: pd.DataFrame = field(repr=False)
    name: str = "evaluation"
    fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return int(self.corpus.shape[1])


def load_evaluation_set(
    embeddings_dir: str | Path, dataset_dir: str | Path, split: str = "test"
) -> EvaluationSet:
    """The embed stage's matrices plus the dataset's ``split`` labels."""
    from components.data import load_dataset
    from components.embedding.store import load_embeddings

    artifacts = load_embeddings(embeddings_dir)
    dataset = load_dataset(dataset_dir)
    labels = dataset.split(split)
    if labels.empty:
        raise ValueError(
            f"{dataset_dir}: the '{split}' split has no labels; the gate needs evaluation labels"
        )
    return EvaluationSet(
        artifacts.corpus,
        list(artifacts.corpus_ids),
        artifacts.queries,
        list(artifacts.query_ids),
        labels,
        name=f"{dataset.name}/{split}",
        fingerprint=artifacts.meta.get("dataset_fingerprint"),
    )


def baseline_methods(data: EvaluationSet, names: Sequence[str] | None) -> dict[str, Any]:
    """The baselines ``names`` (``None``: every one of
    :data:`components.baselines.BASELINES`) fitted on the evaluation corpus.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    from components.baselines import fit_baselines

    return dict(fit_baselines(data.corpus, names))


def compare_on_set(
    data: EvaluationSet,
    adaptors: Mapping[str, Any],
    dims: Sequence[int],
    baselines: Sequence[str] | None = None,
    evaluation: Any | None = None,
) -> Any:
    """Evaluate ``adaptors`` (name → embedder) and the baselines at ``dims``.

    Args:
        data: the frozen evaluation set.
        adaptors: name → embedder (challenger, champion).
        dims: the sizes m.
        baselines: baseline names; ``None`` = all (:data:`components.baselines.BASELINES`).
        evaluation: metric cut-offs (:class:`components.config.EvaluationConfig`).

    Returns:
        An :class:`components.evaluation.EvaluationReport` (``base`` is always included so
        that recommended dimensions can be computed).
    """
    from components.baselines import baseline_names
    from components.config import EvaluationConfig
    from components.evaluation import evaluate_methods

    config = (evaluation or EvaluationConfig()).model_copy(
        update={"dims": tuple(sorted({int(m) for m in dims}))}
    )
    names = list(dict.fromkeys(["base", *baseline_names(baselines)]))
    methods = {**adaptors, **baseline_methods(data, names)}
    return evaluate_methods(
        methods, data.corpus, data.corpus_ids, data.queries, data.query_ids, data.qrels, config
    )
