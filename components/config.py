"""Typed, frozen configuration for the adaptor, its losses and its training.

Values for the pipeline live in ``params.yaml`` (the one place a user edits); these models
give them types, defaults for library use, and validation with actionable messages at
construction time. :func:`components.params.load_params` reads the whole file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AdaptorConfig(FrozenModel):
    """Shape of the residual adaptor ``x̂ = R·x + g(R·x)`` (R = I without rotation).

    Attributes:
        hidden_dim: width of each hidden layer; ``None`` means the input dimension d.
        num_hidden_layers: hidden layers of g (the paper: one).
        activation: non-linearity of g.
        use_rotation: fit an orthogonal pre-rotation R on the corpus (uncentred SVD), so
            training starts from the SVD-rotation baseline. ``False`` is the paper's setup.
    """

    hidden_dim: int | None = Field(default=None, gt=0)
    num_hidden_layers: int = Field(default=1, ge=1, le=4)
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    use_rotation: bool = True


class LossConfig(FrozenModel):
    """Which terms of Eq. 1-6 are combined, and how.

    Attributes:
        prefix_dims: the set 𝓜 of prefix sizes; ``None`` means powers of two from 16 below
            d plus d itself. Every size must be in (0, d].
        prefix_weights: one weight per prefix size (uniform when ``None``).
        alpha: weight of the pairwise loss (Eq. 1).
        beta: weight of the reconstruction loss (Eq. 3).
        gamma: weight of the ranking loss (Eq. 5).
        top_k: neighbours per anchor for the top-k loss (Eq. 2), self excluded.
        negatives_per_positive: random corpus negatives per positive for Eq. 5.
        ranking_pairs_per_step: the most (query, labelled document) pairs Eq. 5 scores in
            one step. A batch with more (dense labels: tens of graded positives per query)
            scores a sample of this many, every query keeping at least one while the budget
            allows, so a step costs the same whatever the labels' density. ``None``: all.
            The default is above what a SciFact batch holds (about 145 pairs for 128
            queries), so there the loss is unchanged.
        ranking_scale: multiplies cosine differences inside Eq. 5's log(1 + exp(·)); 1.0 is
            the paper's loss. Cosine gaps are small, so at 1.0 the loss is almost linear
            and every negative pulls alike; 5.0 weights hard negatives more (SciFact, 3
            seeds: nDCG@10 at 64 from 0.753 to 0.765 mean, and no seed below the floors).
        delta: weight of the listwise contrastive term (InfoNCE over the step's candidates,
            :func:`components.losses.contrastive_loss`) added to Eq. 6; 0 turns it off.
        temperature: the contrastive softmax's temperature τ.
        hard_negatives: mined hard negatives drawn per training query and step, added to
            the random negatives of both ranking terms; 0 = random negatives only.
        hard_negative_depth: how many of each training query's best-ranked unlabelled
            documents (full-d base cosine, labelled positives excluded) are mined.
    """

    prefix_dims: tuple[int, ...] | None = None
    prefix_weights: tuple[float, ...] | None = None
    alpha: float = Field(default=1.0, ge=0)
    beta: float = Field(default=1.0, ge=0)
    gamma: float = Field(default=1.0, ge=0)
    top_k: int = Field(default=10, ge=1)
    negatives_per_positive: int = Field(default=10, ge=1)
    ranking_pairs_per_step: int | None = Field(default=192, ge=1)
    ranking_scale: float = Field(default=5.0, gt=0)
    delta: float = Field(default=0.0, ge=0)
    temperature: float = Field(default=0.05, gt=0)
    hard_negatives: int = Field(default=0, ge=0)
    hard_negative_depth: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _check_prefixes(self) -> LossConfig:
        if self.prefix_dims is not None:
            if not self.prefix_dims:
                raise ValueError(
                    "prefix_dims is empty: give at least one prefix size, e.g. (64, 128, 256)"
                )
            bad = [m for m in self.prefix_dims if m <= 0]
            if bad:
                raise ValueError(f"prefix_dims must be positive, got {bad}")
            if len(set(self.prefix_dims)) != len(self.prefix_dims):
                raise ValueError(f"prefix_dims has duplicates: {list(self.prefix_dims)}")
        if self.prefix_weights is not None:
            if self.prefix_dims is None:
                raise ValueError("prefix_weights needs explicit prefix_dims of the same length")
            if len(self.prefix_weights) != len(self.prefix_dims):
                raise ValueError(
                    f"prefix_weights has {len(self.prefix_weights)} entries but prefix_dims "
                    f"has {len(self.prefix_dims)}: give one weight per prefix size"
                )
            if any(w < 0 for w in self.prefix_weights) or sum(self.prefix_weights) <= 0:
                raise ValueError("prefix_weights must be >= 0 with a positive sum")
        if self.hard_negatives > self.hard_negative_depth:
            raise ValueError(
                f"hard_negatives={self.hard_negatives} per query cannot be drawn from "
                f"hard_negative_depth={self.hard_negative_depth} mined documents: "
                "raise hard_negative_depth or lower hard_negatives"
            )
        return self

    def resolve_dims(self, dim: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """The prefix sizes and normalised weights for embeddings of dimension ``dim``."""
        dims = self.prefix_dims if self.prefix_dims is not None else default_prefix_dims(dim)
        too_large = [m for m in dims if m > dim]
        if too_large:
            raise ValueError(
                f"prefix size(s) {too_large} exceed the embedding dimension "
                f"d={dim}; every size in prefix_dims must be <= {dim}"
            )
        weights = self.prefix_weights or tuple(1.0 for _ in dims)
        total = float(sum(weights))
        return tuple(dims), tuple(w / total for w in weights)


def default_prefix_dims(dim: int, smallest: int = 16) -> tuple[int, ...]:
    """Powers of two from ``smallest`` below ``dim``, then ``dim`` itself."""
    dims: list[int] = []
    m = smallest
    while m < dim:
        dims.append(m)
        m *= 2
    dims.append(dim)
    return tuple(dims)


class OptimConfig(FrozenModel):
    """Optimisation settings of one training phase (stage 1 or stage 2 of the adaptor).

    Attributes:
        learning_rate: Adam learning rate.
        batch_size: anchors per step (corpus embeddings for Eq. 1-3, queries for Eq. 5).
        max_iterations: hard cap on optimiser steps.
        patience: stop after this many held-out evaluations without an improvement
            (evaluations, not steps: the cost of waiting is the same at any ``eval_every``).
        start_patience: stop after this many evaluations when none has beaten the starting
            point (step 0): the stage cannot improve on its start (on MiniLM, stage 1 never
            beats the SVD rotation), so waiting the full ``patience`` is wasted time.
            ``None``: no such rule (only ``patience``).
        eval_every: iterations between held-out evaluations.
        weight_decay: Adam's L2 penalty on the adaptor's weights (0 = none; the residual is
            already kept small by Eq. 3).
        ema_decay: evaluate and keep an exponential moving average of the weights (Polyak
            averaging) instead of the last step's, with this decay per step; it smooths the
            noise of small-batch steps, which is what the held-out score then ranks. ``None``:
            the raw weights.
    """

    learning_rate: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=128, ge=2)
    max_iterations: int = Field(default=5000, ge=1)
    patience: int = Field(default=10, ge=1)
    start_patience: int | None = Field(default=None, ge=1)
    eval_every: int = Field(default=50, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    ema_decay: float | None = Field(default=None, gt=0, lt=1)


class TrainConfig(FrozenModel):
    """Two-stage training (stage 1: Eq. 4 on the corpus; stage 2: Eq. 6 with labels).

    Attributes:
        unsupervised: stage-1 optimisation settings.
        supervised: stage-2 optimisation settings.
        pool_size: most embeddings in the unsupervised training pool ("corpus batch").
        corpus_holdout_fraction: share of the corpus held out for stage-1 early stopping.
        query_holdout_fraction: share of training queries held out for stage-2 stopping.
        heldout_max_queries: the most training queries held out for stage 2 (the rest
            train); with ``heldout_max_documents`` it bounds the cost of one held-out
            evaluation whatever the dataset's size. ``None``: no bound.
        heldout_max_documents: the most corpus documents stage 2's held-out queries retrieve
            from: every document labelled for them, then a seeded random sample of the
            others. ``None``: the whole corpus. SciFact (5,183 documents, 121 held-out
            queries) is within both defaults, so its evaluation is exact (about 0.1 s).
        unsupervised_stopping: stage-1 early-stopping signal on the held-out corpus:
            ``neighbour_ndcg`` (default): nDCG@10, mean over 𝓜, of retrieving each held-out
            document's full-d nearest neighbours with the adapted, truncated vectors; label
            free and aligned with retrieval. ``heldout_loss``: the Eq. 4 loss (the paper's
            wording; on SciFact it kept falling while test nDCG fell, see docs/results.md).
        refit_on_all_queries: after stage 2's early stopping has chosen its step on the
            held-out queries, train again from the same start on *every* labelled training
            query for the same number of passes over the queries, and keep that adaptor
            (the held-out queries are no longer wasted; seeds then train on the same
            queries). Stage 2 then takes about 1.7× as long (SciFact: 119 s against 72 s,
            docs/engine.md).
        seed: seeds sampling, splits and initialisation.
        device: ``auto`` picks CUDA when present, else CPU.
    """

    unsupervised: OptimConfig = OptimConfig()
    supervised: OptimConfig = OptimConfig()
    pool_size: int = Field(default=50_000, ge=10)
    corpus_holdout_fraction: float = Field(default=0.1, gt=0, lt=1)
    query_holdout_fraction: float = Field(default=0.15, gt=0, lt=1)
    heldout_max_queries: int | None = Field(default=1000, ge=2)
    heldout_max_documents: int | None = Field(default=20_000, ge=10)
    unsupervised_stopping: Literal["neighbour_ndcg", "heldout_loss"] = "neighbour_ndcg"
    refit_on_all_queries: bool = False
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


class MethodConfig(FrozenModel):
    """Everything that defines a trained adaptor: shape, loss and training."""

    adaptor: AdaptorConfig = AdaptorConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()


class EvaluationConfig(FrozenModel):
    """Evaluation grid and metrics cut-offs.

    Attributes:
        dims: sizes m reported in the table; ``None`` means powers of two from 16 below d,
            then d (:func:`default_prefix_dims`), the default training sizes too.
        ndcg_k / recall_k / mrr_k: cut-offs of nDCG, Recall and MRR.
        recommend_fraction: the recommended dimension is the smallest m whose nDCG@10 is at
            least this fraction of the base embeddings' full-d nDCG@10.
    """

    dims: tuple[int, ...] | None = None
    ndcg_k: int = Field(default=10, ge=1)
    recall_k: int = Field(default=100, ge=1)
    mrr_k: int = Field(default=10, ge=1)
    recommend_fraction: float = Field(default=0.99, gt=0, le=1)
