"""Two-stage Matryoshka-Adaptor training with early stopping on held-out data.

Stage 1 (unsupervised, Eq. 4; the pipeline's ``pretrain`` stage) learns from corpus
embeddings alone and stops on a held-out share of the corpus, by default on
``neighbour_ndcg`` (do the adapted, truncated vectors find each held-out document's full-d
neighbours?), or on the Eq. 4 loss with ``unsupervised_stopping: heldout_loss``. Stage 2
(the ``finetune`` stage) (supervised, Eq. 6) continues from stage 1's best
weights with a fresh Adam, adds the ranking loss (Eq. 5) on training queries, and stops on
nDCG@10 (mean over the prefix sizes) of held-out *training* queries. Test labels are never
seen here. Both stages keep the best checkpoint, are seeded, use CUDA when present, and
return their per-step loss history for logging.

Example:
    >>> import torch
    >>> from components.config import MethodConfig
    >>> from components.training import train_unsupervised
    >>> corpus = torch.nn.functional.normalize(torch.randn(200, 32), dim=-1)
    >>> adaptor, result = train_unsupervised(corpus, MethodConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from components.adaptor import MatryoshkaAdaptor, check_embeddings, fit_rotation
from components.config import MethodConfig, OptimConfig
from components.losses import (
    LossTerms,
    contrastive_loss,
    pairwise_loss,
    ranking_loss,
    reconstruction_loss,
    supervised_objective,
    topk_loss,
    unsupervised_objective,
)
from components.metrics import Labels, cosine_top_k, ranking_metrics, relevance_labels
from components.progress import DEFAULT_INTERVAL_S, ProgressMode, StepProgress

logger = logging.getLogger(__name__)

#: Why a phase ended: its step budget, ``patience`` evaluations without a better held-out
#: score, or ``start_patience`` evaluations none of which beat the starting point.
StopReason = Literal["max_iterations", "patience", "start_is_best"]


@dataclass
class OptimResult:
    """What one optimisation phase (stage 1 ``unsupervised`` or stage 2 ``supervised``) did:
    the held-out curve, the per-step losses and the best step."""

    phase: str
    best_iteration: int
    best_score: float
    score_name: str
    iterations: int
    stopped_early: bool
    seconds: float
    stop_reason: StopReason = "max_iterations"
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    #: steps of the refit on every labelled query after early stopping (0: none).
    refit_iterations: int = 0

    @property
    def iterations_per_second(self) -> float:
        steps = self.iterations + self.refit_iterations
        return steps / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict[str, float | int | str | bool]:
        return {
            "phase": self.phase,
            "best_iteration": self.best_iteration,
            "best_score": self.best_score,
            "score_name": self.score_name,
            "iterations": self.iterations,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 2),
            "iterations_per_second": round(self.iterations_per_second, 1),
            "refit_iterations": self.refit_iterations,
        }


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def nearest_neighbours(x: torch.Tensor, k: int, chunk_size: int = 4096) -> torch.Tensor:
    """Indices ``[n, k]`` of each row's k most cosine-similar other rows (self excluded)."""
    n = x.shape[0]
    if n < 2:
        raise ValueError("need at least 2 embeddings to find neighbours")
    k = min(k, n - 1)
    unit = torch.nn.functional.normalize(x, dim=-1)
    out = []
    for start in range(0, n, chunk_size):
        scores = unit[start : start + chunk_size] @ unit.T
        rows = torch.arange(scores.shape[0], device=x.device)
        scores[rows, rows + start] = -float("inf")
        out.append(torch.topk(scores, k, dim=1).indices)
    return torch.cat(out)


@torch.no_grad()
def neighbour_relevance(queries: torch.Tensor, documents: torch.Tensor, k: int) -> Labels:
    """Labels (grade 1) marking each query's k nearest documents in full-d cosine.

    The label-free relevance behind stage 1's ``neighbour_ndcg`` stopping signal: truncated
    adapted retrieval should find what full-d retrieval of the original embeddings finds.
    """
    ranked = cosine_top_k(queries, documents, k)
    return Labels([[(int(doc), 1) for doc in row] for row in ranked], documents.shape[0])


def _split(
    n: int, fraction: float, generator: torch.Generator, most: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (train, held-out) split of ``range(n)``; both sides get at least 2 rows, the
    held-out side at most ``most`` (the rest train)."""
    order = torch.randperm(n, generator=generator)
    held = min(max(2, round(n * fraction)), n - 2)
    if most is not None:
        held = max(2, min(held, most))
    return order[held:].sort().values, order[:held].sort().values


def unsupervised_terms(
    adaptor: MatryoshkaAdaptor,
    pool: torch.Tensor,
    neighbours: torch.Tensor,
    anchors: torch.Tensor,
    config: MethodConfig,
    dims: tuple[int, ...],
    weights: tuple[float, ...],
    extra: torch.Tensor | None = None,
    rotated_pool: torch.Tensor | None = None,
) -> tuple[LossTerms, torch.Tensor | None]:
    """Eq. 4 on a batch: anchors, their top-k neighbours (Eq. 2), pairs among anchors (Eq. 1).

    ``extra`` rows (stage 2's queries and candidates) ride along in the same forward pass,
    one MLP call per step instead of three; their adapted vectors are returned second.
    ``rotated_pool``: ``pool`` already rotated by the adaptor (``adaptor.rotate(pool)``,
    computed once per stage); ``extra`` must then be rotated too. The targets always come
    from ``pool`` itself.
    """
    anchor_x = pool[anchors]
    neighbour_x = pool[neighbours[anchors]]  # [B, k, d]
    batch, k, d = neighbour_x.shape
    source = pool if rotated_pool is None else rotated_pool
    inputs = [source[anchors], source[neighbours[anchors].reshape(-1)]]
    if extra is not None:
        inputs.append(extra)
    rotated = adaptor.rotate(torch.cat(inputs)) if rotated_pool is None else torch.cat(inputs)
    adapted, residual = adaptor.adapt_rotated(rotated)
    own = batch * (k + 1)
    adapted_anchor = adapted[:batch]
    adapted_neighbours = adapted[batch:own].reshape(batch, k, d)
    loss = config.loss
    terms = unsupervised_objective(
        topk=topk_loss(anchor_x, adapted_anchor, neighbour_x, adapted_neighbours, dims, weights),
        pairwise=pairwise_loss(anchor_x, adapted_anchor, dims, weights),
        reconstruction=reconstruction_loss(residual[:own]),
        alpha=loss.alpha,
        beta=loss.beta,
    )
    return terms, (adapted[own:] if extra is not None else None)


def train_step(
    adaptor: MatryoshkaAdaptor,
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[], LossTerms],
) -> LossTerms:
    """One optimiser step on the loss ``compute_loss`` builds; returns its terms."""
    adaptor.train()
    optimizer.zero_grad(set_to_none=True)
    terms = compute_loss()
    terms.total.backward()
    optimizer.step()
    return terms


class WeightAverage:
    """An exponential moving average of a module's floating-point parameters and buffers.

    ``update`` after each optimiser step moves the average towards the current weights by
    ``1 - decay``; ``load_into`` copies the average into a module of the same shape.
    It starts at the starting weights and lags the raw ones by about ``1 / (1 - decay)``
    steps, so early stopping (which then scores the average) sees a smoothed path.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> average = WeightAverage(net, decay=0.9)
        >>> average.update(net)
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.state = {
            name: value.detach().clone()
            for name, value in module.state_dict().items()
            if value.is_floating_point()
        }

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        current = module.state_dict()
        for name, value in self.state.items():
            value.lerp_(current[name].detach(), 1.0 - self.decay)

    @torch.no_grad()
    def load_into(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.state, strict=False)


def _train_fixed_steps(
    adaptor: MatryoshkaAdaptor,
    settings: OptimConfig,
    compute_loss: Callable[[], LossTerms],
    steps: int,
) -> None:
    """``steps`` optimiser steps with no evaluation; the weight average when configured."""
    optimizer = torch.optim.Adam(
        adaptor.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    averaged = WeightAverage(adaptor, settings.ema_decay) if settings.ema_decay else None
    for _ in range(steps):
        train_step(adaptor, optimizer, compute_loss)
        if averaged is not None:
            averaged.update(adaptor)
    if averaged is not None:
        averaged.load_into(adaptor)
    adaptor.eval()


def _optimise(
    phase: str,
    adaptor: MatryoshkaAdaptor,
    settings: OptimConfig,
    compute_loss: Callable[[], LossTerms],
    evaluate: Callable[[], float],
    higher_is_better: bool,
    score_name: str,
    progress_mode: ProgressMode = "auto",
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> OptimResult:
    """The loop shared by both stages: Adam, periodic held-out score, patience, best copy;
    progress (step, loss, held-out, best, ETA) at least every ``progress_interval_s``."""
    optimizer = torch.optim.Adam(
        adaptor.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    sign = 1.0 if higher_is_better else -1.0
    progress = StepProgress(
        phase,
        settings.max_iterations,
        settings.patience * settings.eval_every,
        score_name,
        higher_is_better,
        start_patience=(
            settings.start_patience * settings.eval_every if settings.start_patience else None
        ),
        mode=progress_mode,
        interval_s=progress_interval_s,
    )
    averaged = WeightAverage(adaptor, settings.ema_decay) if settings.ema_decay else None
    best_score = evaluate()
    progress.evaluated(0, best_score)
    best_iteration, best_state = 0, copy.deepcopy(adaptor.state_dict())
    evaluations = [{"step": 0, score_name: best_score}]
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    iteration = 0
    stop_reason: StopReason = "max_iterations"
    since_best = 0  # evaluations since the best one
    for iteration in range(1, settings.max_iterations + 1):
        terms = train_step(adaptor, optimizer, compute_loss)
        if averaged is not None:
            averaged.update(adaptor)
        history.append({"step": iteration, **terms.as_floats()})
        progress.step(iteration, history[-1]["loss"])
        if iteration % settings.eval_every == 0 or iteration == settings.max_iterations:
            raw_state = None
            if averaged is not None:  # score (and keep) the average, then train on
                raw_state = copy.deepcopy(adaptor.state_dict())
                averaged.load_into(adaptor)
            score = evaluate()
            evaluations.append({"step": iteration, score_name: score})
            progress.evaluated(iteration, score)
            since_best += 1
            if sign * score > sign * best_score:
                best_score, best_iteration = score, iteration
                best_state = copy.deepcopy(adaptor.state_dict())
                since_best = 0
            if raw_state is not None:
                adaptor.load_state_dict(raw_state)
            start_limit = settings.start_patience
            if best_iteration == 0 and start_limit is not None and since_best >= start_limit:
                stop_reason = "start_is_best"
                break
            if since_best >= settings.patience:
                stop_reason = "patience"
                break
    seconds = time.perf_counter() - start
    stopped_early = stop_reason != "max_iterations"
    progress.close(stopped_early)
    if stop_reason == "start_is_best":
        logger.info(
            "%s stage: no held-out evaluation in %d (%d steps) beat the starting point "
            "(%s=%.5f): stopped and kept the start unchanged",
            phase,
            len(evaluations) - 1,
            iteration,
            score_name,
            best_score,
        )
    adaptor.load_state_dict(best_state)
    adaptor.eval()
    result = OptimResult(
        phase=phase,
        best_iteration=best_iteration,
        best_score=best_score,
        score_name=score_name,
        iterations=iteration,
        stopped_early=stopped_early,
        stop_reason=stop_reason,
        seconds=seconds,
        history=history,
        evaluations=evaluations,
    )
    logger.info(
        "%s stage: %d iterations in %.1f s (%.0f it/s), best %s=%.5f at %d",
        phase,
        iteration,
        seconds,
        result.iterations_per_second,
        score_name,
        best_score,
        best_iteration,
    )
    return result


def build_adaptor(corpus: torch.Tensor, config: MethodConfig) -> MatryoshkaAdaptor:
    """A fresh adaptor for ``corpus``'s d: identity, or the fitted SVD rotation."""
    rotation = fit_rotation(corpus) if config.adaptor.use_rotation else None
    return MatryoshkaAdaptor(corpus.shape[1], config.adaptor, rotation)


def train_unsupervised(
    corpus: torch.Tensor | np.ndarray,
    config: MethodConfig,
    adaptor: MatryoshkaAdaptor | None = None,
    *,
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> tuple[MatryoshkaAdaptor, OptimResult]:
    """Stage 1: minimise Eq. 4 on the corpus; early-stop on a held-out share of it.

    Args:
        corpus: ``[n, d]`` base corpus embeddings (n >= 20 so both sides of the split have
            neighbours).
        config: adaptor shape, losses and training settings.
        adaptor: start from this adaptor (default: a fresh one, see :func:`build_adaptor`).
        progress_interval_s: the most seconds between two progress lines.

    Returns:
        The adaptor with the best held-out weights, and the stage's result.
    """
    corpus = check_embeddings(corpus, "corpus")
    if corpus.shape[0] < 20:
        raise ValueError(
            f"corpus: {corpus.shape[0]} embeddings; unsupervised training needs at least 20"
        )
    dims, weights = config.loss.resolve_dims(corpus.shape[1])
    train = config.train
    torch.manual_seed(train.seed)
    device = resolve_device(train.device)
    generator = torch.Generator().manual_seed(train.seed)
    adaptor = (adaptor or build_adaptor(corpus, config)).to(device)

    pool_idx = torch.randperm(corpus.shape[0], generator=generator)[: train.pool_size]
    pool = corpus[pool_idx.sort().values].to(device)
    fit_idx, held_idx = _split(pool.shape[0], train.corpus_holdout_fraction, generator)
    fit_pool, held_pool = pool[fit_idx.to(device)], pool[held_idx.to(device)]
    k = config.loss.top_k
    fit_neighbours = nearest_neighbours(fit_pool, k)
    held_neighbours = (
        nearest_neighbours(held_pool, k) if train.unsupervised_stopping == "heldout_loss" else None
    )
    batch_size = min(config.train.unsupervised.batch_size, fit_pool.shape[0])
    step_generator = torch.Generator().manual_seed(train.seed + 1)

    def compute_loss() -> LossTerms:
        anchors = torch.randint(fit_pool.shape[0], (batch_size,), generator=step_generator)
        return unsupervised_terms(
            adaptor, fit_pool, fit_neighbours, anchors.to(device), config, dims, weights
        )[0]

    if train.unsupervised_stopping == "heldout_loss":
        held_batches = torch.arange(held_pool.shape[0], device=device).split(batch_size)

        @torch.no_grad()
        def evaluate() -> float:
            adaptor.eval()
            values = [
                unsupervised_terms(
                    adaptor, held_pool, held_neighbours, batch, config, dims, weights
                )[0].total
                for batch in held_batches
                if len(batch) > 1
            ]
            return float(torch.stack(values).mean())
    else:
        # At most 1,000 held-out documents as pseudo-queries keeps this cheap for big pools.
        probes = held_pool[:1000]
        relevance = neighbour_relevance(probes, fit_pool, k=10)

        def evaluate() -> float:
            return mean_ndcg_over_prefixes(adaptor, probes, fit_pool, relevance, dims)

    result = _optimise(
        "unsupervised",
        adaptor,
        train.unsupervised,
        compute_loss,
        evaluate,
        higher_is_better=train.unsupervised_stopping == "neighbour_ndcg",
        score_name=(
            "heldout_loss"
            if train.unsupervised_stopping == "heldout_loss"
            else "heldout_neighbour_ndcg"
        ),
        progress_interval_s=progress_interval_s,
    )
    return adaptor.cpu(), result


@dataclass(frozen=True)
class LabelledQueries:
    """Training queries with their labels as corpus indices (positives only, score > 0)."""

    embeddings: torch.Tensor
    labels: list[list[tuple[int, int]]]  # per query: (corpus index, score)

    @classmethod
    def build(
        cls, queries: torch.Tensor, query_ids: list[str], corpus_ids: list[str], qrels: pd.DataFrame
    ) -> LabelledQueries:
        query_rows, relevance = relevance_labels(qrels, query_ids, corpus_ids)
        labels = [relevance.row(r) for r in range(len(query_rows))]
        return cls(embeddings=queries[torch.as_tensor(query_rows)], labels=labels)

    def subset(self, rows: torch.Tensor) -> LabelledQueries:
        return LabelledQueries(self.embeddings[rows], [self.labels[int(r)] for r in rows])


def sample_pairs(
    labels: list[list[tuple[int, int]]], budget: int | None, generator: torch.Generator
) -> list[list[tuple[int, int]]]:
    """At most ``budget`` labelled pairs of a batch, spread over its queries.

    Dense labels (tens of graded positives per query) would make Eq. 5's work per step grow
    with them; a fixed budget keeps a step's cost flat. Each query's labels are shuffled and
    taken round-robin (first one label of every query, then a second, ...), so every query
    keeps at least one while the budget allows.

    Args:
        labels: per query of the batch, its ``(corpus index, score)`` labels.
        budget: the most pairs to keep; ``None`` or a batch within it: ``labels`` itself.
        generator: the step's random generator (drawn from only when sampling).

    Returns:
        Per query, the labels kept (``labels`` itself when nothing had to be dropped).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> kept = sample_pairs([[(1, 1), (2, 2), (3, 1)], [(4, 1)]], 3, g)
        >>> [len(k) for k in kept], kept[1]
        ([2, 1], [(4, 1)])
    """
    total = sum(len(query) for query in labels)
    if budget is None or total <= budget:
        return labels
    shuffled = [
        [query[i] for i in torch.randperm(len(query), generator=generator).tolist()]
        for query in labels
    ]
    kept: list[list[tuple[int, int]]] = [[] for _ in labels]
    taken, depth = 0, 0
    while taken < budget:
        for row, query in enumerate(shuffled):
            if depth < len(query) and taken < budget:
                kept[row].append(query[depth])
                taken += 1
        depth += 1
    return kept


@torch.no_grad()
def mine_hard_negatives(
    queries: torch.Tensor,
    labels: list[list[tuple[int, int]]],
    corpus: torch.Tensor,
    depth: int,
) -> torch.Tensor:
    """Each query's ``depth`` best-ranked unlabelled documents by full-d base cosine.

    The negatives a base model confuses with the positives are the informative ones for a
    ranking loss (random corpus documents are mostly easy). Labelled positives are never
    returned: the top ``depth + (most labels of a query)`` documents are retrieved, so that
    removing a query's positives still leaves ``depth`` of them (fewer only when the corpus
    is smaller).

    Args:
        queries: ``[q, d]`` base query embeddings.
        labels: per query, its ``(corpus index, score > 0)`` labels.
        corpus: ``[n, d]`` base corpus embeddings.
        depth: how many negatives to keep per query.

    Returns:
        ``[q, depth]`` corpus indices, best first, padded with -1 where the corpus runs out.

    Example:
        >>> corpus = torch.eye(4)
        >>> mine_hard_negatives(torch.tensor([[1.0, 0.5, 0.2, 0.0]]), [[(0, 1)]], corpus, 2)
        tensor([[1, 2]])
    """
    if queries.shape[0] != len(labels):
        raise ValueError(f"{queries.shape[0]} queries but {len(labels)} label lists")
    widest = max((len(query) for query in labels), default=0)
    ranked = cosine_top_k(queries, corpus, depth + widest)
    mined = np.full((len(labels), depth), -1, dtype=np.int64)
    for row, query in enumerate(labels):
        positives = {doc for doc, _ in query}
        kept = [int(doc) for doc in ranked[row] if int(doc) not in positives][:depth]
        mined[row, : len(kept)] = kept
    return torch.from_numpy(mined)


def sample_hard_negatives(
    mined: torch.Tensor, rows: torch.Tensor, per_query: int, generator: torch.Generator
) -> list[int]:
    """``per_query`` distinct mined negatives drawn for each of ``rows`` (padding dropped)."""
    if per_query == 0:
        return []
    picked = mined[rows]
    order = torch.rand(picked.shape, generator=generator).argsort(dim=1)[:, :per_query]
    chosen = picked.gather(1, order)
    return chosen[chosen >= 0].tolist()


class HeldoutRetrieval:
    """Stage 2's held-out score, nDCG@k (mean over the prefix sizes), prepared once.

    Everything that does not change between two evaluations is computed here, once: the
    candidate documents, each query's ideal DCG and its labels as sorted keys. An
    evaluation then only adapts the candidates and queries, takes each prefix's top k and
    looks the gains up, so its cost is bounded by ``max_queries`` x ``max_documents``
    whatever the dataset's size. Within both bounds the score is exactly
    :func:`mean_ndcg_over_prefixes` over the whole corpus.

    Args:
        queries: ``[q, d]`` held-out query embeddings.
        labels: per query, its ``(corpus index, score > 0)`` labels.
        corpus: ``[n, d]`` corpus embeddings (on the training device).
        dims: the prefix sizes averaged over.
        max_documents: the most candidates retrieved from: every document labelled for a
            held-out query, then a seeded random sample of the others; ``None``: all of them.
        generator: draws that sample (untouched when the corpus fits).
        k: the nDCG cut-off.

    Example:
        >>> corpus = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1)
        >>> held = HeldoutRetrieval(corpus[:3], [[(0, 1)], [(1, 1)], [(2, 2)]], corpus, (4, 8),
        ...                         max_documents=20, generator=torch.Generator())
        >>> held.documents.shape[0]
        20
    """

    def __init__(
        self,
        queries: torch.Tensor,
        labels: list[list[tuple[int, int]]],
        corpus: torch.Tensor,
        dims: tuple[int, ...],
        max_documents: int | None,
        generator: torch.Generator,
        k: int = 10,
    ) -> None:
        if queries.shape[0] != len(labels) or not labels:
            raise ValueError(f"{queries.shape[0]} held-out queries but {len(labels)} label lists")
        n_docs = corpus.shape[0]
        labelled = sorted({doc for query in labels for doc, _ in query})
        if max_documents is None or n_docs <= max_documents:
            chosen = np.arange(n_docs)
        else:
            others = np.setdiff1d(np.arange(n_docs), labelled)
            keep = max(0, max_documents - len(labelled))
            sample = torch.randperm(len(others), generator=generator)[:keep].numpy()
            chosen = np.union1d(labelled, others[sample])
        column = np.full(n_docs, -1, dtype=np.int64)
        column[chosen] = np.arange(len(chosen))
        self.queries = queries
        self.documents = corpus if len(chosen) == n_docs else corpus[torch.as_tensor(chosen)]
        self.dims, self.k = dims, k
        self.n_candidates = len(chosen)
        self._labels = Labels(
            [[(int(column[doc]), score) for doc, score in query] for query in labels],
            self.n_candidates,
        )
        self._ideal = self._labels.ideal_dcg(k)
        self._discounts = 1.0 / np.log2(np.arange(2, k + 2))

    def ndcg(self, ranked: np.ndarray) -> float:
        """Mean nDCG@k of ``ranked`` (``[q, <=k]`` candidate columns, best first)."""
        dcg = (self._labels.gains(ranked) * self._discounts[: ranked.shape[1]]).sum(axis=1)
        return float((dcg / self._ideal).mean())

    @torch.no_grad()
    def __call__(self, adaptor: MatryoshkaAdaptor) -> float:
        """The held-out score of ``adaptor`` (switched to eval mode)."""
        adaptor.eval()
        adapted_documents = adaptor(self.documents)
        adapted_queries = adaptor(self.queries)
        scores = [
            self.ndcg(cosine_top_k(adapted_queries[:, :m], adapted_documents[:, :m], self.k))
            for m in self.dims
        ]
        return float(np.mean(scores))


@torch.no_grad()
def mean_ndcg_over_prefixes(
    adaptor: MatryoshkaAdaptor,
    queries: torch.Tensor,
    corpus: torch.Tensor,
    relevance: Labels | np.ndarray,
    dims: tuple[int, ...],
    k: int = 10,
) -> float:
    """nDCG@k of exact cosine retrieval, averaged over the prefix sizes."""
    adaptor.eval()
    adapted_corpus = adaptor(corpus)
    adapted_queries = adaptor(queries)
    scores = []
    for m in dims:
        ranked = cosine_top_k(adapted_queries[:, :m], adapted_corpus[:, :m], k)
        scores.append(ranking_metrics(ranked, relevance, ndcg_k=k, recall_k=k, mrr_k=k)["ndcg"])
    return float(np.mean(scores))


def train_supervised(
    corpus: torch.Tensor | np.ndarray,
    corpus_ids: list[str],
    queries: torch.Tensor | np.ndarray,
    query_ids: list[str],
    train_qrels: pd.DataFrame,
    config: MethodConfig,
    adaptor: MatryoshkaAdaptor,
    *,
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> tuple[MatryoshkaAdaptor, OptimResult]:
    """Stage 2: minimise Eq. 6 from ``adaptor``'s weights (normally stage 1's best).

    The unsupervised terms draw from a pool of corpus and fitting-query embeddings; the
    ranking loss (Eq. 5) scores each batch of queries against all positives of the batch and
    random corpus negatives. Early stopping: nDCG@10 (mean over the prefix sizes) of a
    held-out share of the *training* queries, retrieving from the whole corpus (of the
    weights' moving average with ``ema_decay``). With ``refit_on_all_queries`` that pass only
    chooses the step count: stage 2 then restarts from ``adaptor``'s weights and trains on
    every labelled query for as many passes over the queries, and that adaptor is returned
    (``OptimResult.refit_iterations``; docs/engine.md "Weight averaging and the refit").

    Args:
        corpus, corpus_ids: ``[n, d]`` corpus embeddings and their ids (row-aligned).
        queries, query_ids: ``[q, d]`` query embeddings and their ids (row-aligned).
        train_qrels: training labels (``query_id``, ``doc_id``, ``score``); test labels must
            never be passed here.
        config: losses and training settings.
        adaptor: the starting adaptor (trained further in place and returned).
        progress_interval_s: the most seconds between two progress lines.
    """
    corpus = check_embeddings(corpus, "corpus")
    queries = check_embeddings(queries, "queries", corpus.shape[1])
    if adaptor.dim != corpus.shape[1]:
        raise ValueError(f"dimension mismatch: adaptor d={adaptor.dim}, corpus d={corpus.shape[1]}")
    for name, matrix, ids in (("corpus", corpus, corpus_ids), ("queries", queries, query_ids)):
        if matrix.shape[0] != len(ids):
            raise ValueError(f"{name}: {matrix.shape[0]} embeddings but {len(ids)} ids")
    dims, weights = config.loss.resolve_dims(corpus.shape[1])
    train = config.train
    torch.manual_seed(train.seed)
    device = resolve_device(train.device)
    generator = torch.Generator().manual_seed(train.seed + 2)
    labelled = LabelledQueries.build(queries, query_ids, corpus_ids, train_qrels)
    if len(labelled.labels) < 4:
        raise ValueError(
            f"supervised training needs at least 4 labelled training queries, "
            f"got {len(labelled.labels)}"
        )
    fit_rows, held_rows = _split(
        len(labelled.labels), train.query_holdout_fraction, generator, train.heldout_max_queries
    )
    fitting, held = labelled.subset(fit_rows), labelled.subset(held_rows)

    adaptor = adaptor.to(device)
    corpus_device = corpus.to(device)
    settings = train.supervised
    n_docs = corpus.shape[0]
    column_of = np.full(n_docs, -1, dtype=np.int64)  # corpus index -> candidate column
    loss_config = config.loss
    with torch.no_grad():  # the rotation is fixed: rotate every input once, not every step
        rotated_corpus = adaptor.rotate(corpus_device)

    def build_loss(
        training_queries: LabelledQueries, pool_generator: torch.Generator, step_seed: int
    ) -> Callable[[], LossTerms]:
        """Eq. 6 over ``training_queries``' labels (and a pool of corpus + their
        embeddings)."""
        pool = torch.cat([corpus, training_queries.embeddings])
        pool_idx = torch.randperm(pool.shape[0], generator=pool_generator)[: train.pool_size]
        pool = pool[pool_idx.sort().values].to(device)
        neighbours = nearest_neighbours(pool, loss_config.top_k)
        batch_size = min(settings.batch_size, pool.shape[0])
        query_batch = min(settings.batch_size, len(training_queries.labels))
        step_generator = torch.Generator().manual_seed(step_seed)
        with torch.no_grad():
            rotated_pool = adaptor.rotate(pool)
            rotated_queries = adaptor.rotate(training_queries.embeddings.to(device))
        mined = (
            mine_hard_negatives(
                training_queries.embeddings,
                training_queries.labels,
                corpus,
                loss_config.hard_negative_depth,
            )
            if loss_config.hard_negatives
            else None
        )

        def compute_loss() -> LossTerms:
            anchors = torch.randint(pool.shape[0], (batch_size,), generator=step_generator)
            batch = torch.randperm(len(training_queries.labels), generator=step_generator)[
                :query_batch
            ]
            batch_labels = [training_queries.labels[row] for row in batch.tolist()]
            chosen = sample_pairs(batch_labels, config.loss.ranking_pairs_per_step, step_generator)
            positives = sorted({doc for labels in chosen for doc, _ in labels})
            n_negatives = config.loss.negatives_per_positive * len(positives)
            negatives = torch.randint(n_docs, (n_negatives,), generator=step_generator).tolist()
            if mined is not None:
                negatives += sample_hard_negatives(
                    mined, batch, loss_config.hard_negatives, step_generator
                )
            candidate_list = sorted(set(positives) | set(negatives))
            candidates = torch.as_tensor(candidate_list)
            column_of[candidate_list] = np.arange(len(candidate_list))
            relevance = torch.zeros(len(batch), len(candidates))
            for i, labels in enumerate(batch_labels):  # every label present, sampled or not
                for doc, score in labels:
                    if column_of[doc] >= 0:
                        relevance[i, int(column_of[doc])] = float(score)
            pair_mask = None
            if chosen is not batch_labels:
                pair_mask = torch.zeros(len(batch), len(candidates), dtype=torch.bool)
                for i, labels in enumerate(chosen):
                    for doc, _ in labels:
                        pair_mask[i, int(column_of[doc])] = True
            column_of[candidate_list] = -1
            ranked_inputs = torch.cat(
                [rotated_queries[batch.to(device)], rotated_corpus[candidates.to(device)]]
            )
            unsupervised, adapted = unsupervised_terms(
                adaptor,
                pool,
                neighbours,
                anchors.to(device),
                config,
                dims,
                weights,
                extra=ranked_inputs,
                rotated_pool=rotated_pool,
            )
            assert adapted is not None
            adapted_queries, adapted_candidates = adapted[: len(batch)], adapted[len(batch) :]
            relevance = relevance.to(device)
            anchors_mask = None if pair_mask is None else pair_mask.to(device)
            rank = ranking_loss(
                adapted_queries,
                adapted_candidates,
                relevance,
                dims,
                weights,
                scale=loss_config.ranking_scale,
                anchors=anchors_mask,
            )
            contrastive = (
                contrastive_loss(
                    adapted_queries,
                    adapted_candidates,
                    relevance,
                    dims,
                    weights,
                    loss_config.temperature,
                    anchors=anchors_mask,
                )
                if loss_config.delta > 0
                else None
            )
            return supervised_objective(
                unsupervised, rank, loss_config.gamma, contrastive, loss_config.delta
            )

        return compute_loss

    evaluate = HeldoutRetrieval(
        held.embeddings.to(device),
        held.labels,
        corpus_device,
        dims,
        train.heldout_max_documents,
        torch.Generator().manual_seed(train.seed + 4),
    )

    start_state = copy.deepcopy(adaptor.state_dict())
    result = _optimise(
        "supervised",
        adaptor,
        settings,
        build_loss(fitting, generator, train.seed + 3),
        lambda: evaluate(adaptor),
        higher_is_better=True,
        score_name="heldout_ndcg_at_10",
        progress_interval_s=progress_interval_s,
    )
    if train.refit_on_all_queries and result.best_iteration > 0:
        # The held-out queries chose the step count; now every labelled query trains, for
        # as many passes over the queries as the chosen step saw (a step draws at most a
        # batch of queries, all of them when fewer).
        passes = result.best_iteration * min(settings.batch_size, len(fitting.labels))
        passes /= len(fitting.labels)
        per_step = min(settings.batch_size, len(labelled.labels))
        steps = max(1, round(passes * len(labelled.labels) / per_step))
        adaptor.load_state_dict(start_state)
        refit_loss = build_loss(
            labelled, torch.Generator().manual_seed(train.seed + 5), train.seed + 6
        )
        began = time.perf_counter()
        _train_fixed_steps(adaptor, settings, refit_loss, steps)
        result.refit_iterations = steps
        result.seconds += time.perf_counter() - began
        logger.info(
            "supervised stage: refitted on all %d labelled queries for %d steps (the held-out "
            "best was step %d of %d fitting queries)",
            len(labelled.labels),
            steps,
            result.best_iteration,
            len(fitting.labels),
        )
    return adaptor.cpu(), result


@dataclass
class TrainingResult:
    """Both stages' adaptors and results (``supervised*`` is None without labels)."""

    unsupervised_adaptor: MatryoshkaAdaptor
    unsupervised: OptimResult
    supervised_adaptor: MatryoshkaAdaptor | None = None
    supervised: OptimResult | None = None


def train_adaptor(
    corpus: torch.Tensor | np.ndarray,
    config: MethodConfig,
    corpus_ids: list[str] | None = None,
    queries: torch.Tensor | np.ndarray | None = None,
    query_ids: list[str] | None = None,
    train_qrels: pd.DataFrame | None = None,
) -> TrainingResult:
    """Stage 1, then stage 2 from stage 1's best weights when training labels are given."""
    unsupervised_adaptor, unsupervised = train_unsupervised(corpus, config)
    result = TrainingResult(unsupervised_adaptor, unsupervised)
    if train_qrels is None or train_qrels.empty:
        logger.info("no training labels: supervised stage skipped")
        return result
    if queries is None or query_ids is None or corpus_ids is None:
        raise ValueError(
            "supervised training needs corpus_ids, queries and query_ids with train_qrels"
        )
    start = copy.deepcopy(unsupervised_adaptor)
    result.supervised_adaptor, result.supervised = train_supervised(
        corpus, corpus_ids, queries, query_ids, train_qrels, config, start
    )
    return result
