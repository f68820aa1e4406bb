"""Matryoshka-Adaptor losses, Eq. 1-6 of arXiv 2407.20243, over a set of prefix sizes.

Every similarity target is the ORIGINAL, FULL-d cosine; every prediction is the ADAPTED,
TRUNCATED cosine ``cos_m(a, b) = cos(a[:m], b[:m])`` (prefixes re-normalised). Reductions are
means inside each term and a weighted mean over the prefix sizes 𝓜, so that α = β = γ = 1
stay comparable whatever the batch size, k or d.

Example:
    >>> import torch
    >>> from components.losses import pairwise_loss
    >>> x = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    >>> float(pairwise_loss(x, x, dims=(8,), weights=(1.0,))) < 1e-6  # identity at full d
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F


def prefix_normalize(x: torch.Tensor, m: int) -> torch.Tensor:
    """The first ``m`` coordinates of each row, L2-normalised."""
    return F.normalize(x[..., :m], dim=-1)


def prefix_cosines(
    a: torch.Tensor, b: torch.Tensor, dims: Sequence[int], rowwise: bool = False
) -> list[torch.Tensor]:
    """``cos_m`` for every m of ``dims`` (in that order), in one pass over the coordinates.

    The same values as ``prefix_normalize(a, m) @ prefix_normalize(b, m).T`` for each m,
    but the dot products are accumulated block by block (coordinates ``[0, m₁)``,
    ``[m₁, m₂)``, ...) and so are the squared prefix norms, so all the prefix sizes
    together cost one full-d product instead of one per size (2.3 times fewer
    multiplications for 16, 32, ..., 384; Eq. 2's loss forward and backward about twice
    as fast). Norms are clamped at 1e-12, like ``F.normalize``.

    Args:
        a: ``[A, d]``.
        b: ``[B, d]``, or ``[A, k, d]`` with ``rowwise`` (row i of ``a`` against its k rows).
        dims: prefix sizes, each in (0, d], any order.
        rowwise: ``[A, k]`` cosines of each row with its own k rows instead of ``[A, B]``.

    Example:
        >>> x = torch.tensor([[3.0, 4.0], [4.0, 3.0]])
        >>> [round(float(c[0, 1]), 2) for c in prefix_cosines(x, x, (1, 2))]
        [1.0, 0.96]
    """

    def product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ad,akd->ak", x, y) if rowwise else x @ y.T

    def norms(x: torch.Tensor) -> torch.Tensor:  # [..., len(order)]: |x[:m]| per size
        blocks = [x[..., s:e].pow(2).sum(-1) for s, e in zip([0, *order], order, strict=False)]
        return torch.stack(blocks, -1).cumsum(-1).clamp_min(1e-24).sqrt()

    order = sorted(set(dims))
    a_norms, b_norms = norms(a), norms(b)
    cosines: dict[int, torch.Tensor] = {}
    dot, start = None, 0
    for i, m in enumerate(order):
        block = product(a[..., start:m], b[..., start:m])
        dot = block if dot is None else dot + block
        denominator = a_norms[:, i : i + 1] * (b_norms[..., i] if rowwise else b_norms[:, i])
        cosines[m] = dot / denominator
        start = m
    return [cosines[m] for m in dims]


def _weighted_over_prefixes(
    per_prefix: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    return torch.stack([w * value for w, value in zip(weights, per_prefix, strict=True)]).sum()


def pairwise_loss(
    original: torch.Tensor, adapted: torch.Tensor, dims: Sequence[int], weights: Sequence[float]
) -> torch.Tensor:
    """Eq. 1, global structure: mean over pairs i≠j of ``|cos(x_i,x_j) − cos_m(x̂_i,x̂_j)|``.

    Args:
        original: ``[B, d]`` original embeddings (the pairs are all i≠j of the batch).
        adapted: ``[B, d]`` adapted embeddings of the same rows.
        dims, weights: prefix sizes 𝓜 and their weights (summing to 1).
    """
    n = original.shape[0]
    if n < 2:
        raise ValueError("pairwise_loss needs at least 2 rows to form a pair")
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=original.device)
    unit = F.normalize(original, dim=-1)
    target = (unit @ unit.T)[off_diagonal]
    terms = [
        (target - predicted[off_diagonal]).abs().mean()
        for predicted in prefix_cosines(adapted, adapted, dims)
    ]
    return _weighted_over_prefixes(terms, weights)


def topk_loss(
    original_anchor: torch.Tensor,
    adapted_anchor: torch.Tensor,
    original_neighbours: torch.Tensor,
    adapted_neighbours: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float],
) -> torch.Tensor:
    """Eq. 2, local structure: like Eq. 1 but j runs over the k nearest neighbours of i.

    Args:
        original_anchor, adapted_anchor: ``[B, d]``.
        original_neighbours, adapted_neighbours: ``[B, k, d]``, the neighbours of each anchor
            found in the original full-d space (self excluded).
    """
    target = torch.einsum(
        "bd,bkd->bk", F.normalize(original_anchor, dim=-1), F.normalize(original_neighbours, dim=-1)
    )
    terms = [
        (target - predicted).abs().mean()
        for predicted in prefix_cosines(adapted_anchor, adapted_neighbours, dims, rowwise=True)
    ]
    return _weighted_over_prefixes(terms, weights)


def reconstruction_loss(residual: torch.Tensor) -> torch.Tensor:
    """Eq. 3, ``|x − x̂|₁`` = ``|g(x)|₁``, as a mean over rows and coordinates.

    The per-element mean keeps β's scale independent of d, like the other terms. (A per-row
    L1 norm is d times larger: measured on SciFact it pins g at zero for β = 1, so neither
    stage can learn.) With a fixed rotation the reconstruction target is the rotated input,
    which the rotation reproduces losslessly, so the penalty is on the residual in both
    set-ups.
    """
    return residual.abs().mean()


def _anchor_pairs(
    loss: str, relevance: torch.Tensor, anchors: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, document) indices of the labelled pairs that act as j: ``anchors``, checked
    against ``relevance``, or every labelled pair."""
    if bool((relevance < 0).any()):
        raise ValueError(f"{loss}: relevance labels must be >= 0")
    labelled = relevance > 0
    if anchors is not None:
        if anchors.shape != relevance.shape or bool((anchors & ~labelled).any()):
            raise ValueError(f"{loss}: anchors must be labelled pairs of relevance's shape")
        labelled = anchors
    return labelled.nonzero(as_tuple=True)


def ranking_loss(
    adapted_queries: torch.Tensor,
    adapted_documents: torch.Tensor,
    relevance: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float],
    scale: float = 1.0,
    anchors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 5, relevance-weighted RankNet over every ordered pair of candidates per query.

    ``Σ_{j,k} 1[y_ij > y_ik]·(y_ij − y_ik)·log(1 + exp(scale·(s_ik − s_ij)))`` with
    ``s = cos_m(q̂, x̂)``, averaged over the pairs that count, then over 𝓜.

    Labels are >= 0, so every counted pair has a labelled j (y_ij > 0): the sum runs over
    the (query, labelled document) pairs P against all N candidates, ``[P, N]`` instead of
    ``[Q, N, N]``, with the same value.

    Args:
        adapted_queries: ``[Q, d]``.
        adapted_documents: ``[N, d]`` candidates shared by all queries of the batch.
        relevance: ``[Q, N]`` graded labels y >= 0 (0 for unlabelled candidates).
        scale: multiplies score differences (1.0 is the paper's loss; cosine differences
            are small, so a larger scale sharpens the gradient).
        anchors: ``[Q, N]`` bool, the labelled pairs that act as j (a sample of them when
            labels are dense); default every labelled pair. Labelled candidates outside it
            still count with their grade as k, so they are never taken for negatives.
    """
    query_of_pair, doc_of_pair = _anchor_pairs("ranking_loss", relevance, anchors)
    gain = relevance[query_of_pair, doc_of_pair].unsqueeze(1) - relevance[query_of_pair]
    counted = gain > 0  # [P, N]: 1[y_ij > y_ik]
    count = counted.sum()
    if int(count) == 0:
        raise ValueError(
            "ranking_loss: no candidate pair has different relevance; each "
            "query needs at least one positive and one lower-graded candidate"
        )
    weight = torch.where(counted, gain, torch.zeros_like(gain))
    # One row per labelled pair (its query's scores against every candidate): [P, N] s_ik.
    pair_queries = adapted_queries[query_of_pair]
    terms = []
    for pair_scores in prefix_cosines(pair_queries, adapted_documents, dims):
        positive = pair_scores.gather(1, doc_of_pair.unsqueeze(1))  # s_ij
        terms.append((F.softplus(scale * (pair_scores - positive)) * weight).sum() / count)
    return _weighted_over_prefixes(terms, weights)


def contrastive_loss(
    adapted_queries: torch.Tensor,
    adapted_documents: torch.Tensor,
    relevance: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float],
    temperature: float,
    anchors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Listwise contrastive term (InfoNCE) over the shared candidates, graded.

    For a labelled pair (query i, document j) the candidates k with a lower grade
    (``y_ik < y_ij``: unlabelled in-batch positives of other queries, mined hard negatives and
    random negatives) compete with j in one softmax at temperature τ::

        ℓ_ij = −log( exp(s_ij/τ) / (exp(s_ij/τ) + Σ_{k: y_ik < y_ij} exp(s_ik/τ)) )

    with ``s = cos_m(q̂, x̂)``. Candidates graded as high as j or higher are left out of its
    denominator, so one positive never pushes away another (multiple-negatives ranking,
    sentence-transformers' ``MultipleNegativesRankingLoss``, generalised to several graded
    positives per query). The pairs are averaged with weight ``y_ij``, then over 𝓜.

    Why next to Eq. 5: Eq. 5 sums independent pairwise terms, so a positive already above
    most negatives keeps being pushed by all of them alike; the softmax concentrates the
    gradient on the few negatives that outrank j, which is what top-10 metrics reward.

    Args:
        adapted_queries: ``[Q, d]``.
        adapted_documents: ``[N, d]`` candidates shared by all queries of the batch.
        relevance: ``[Q, N]`` graded labels y >= 0 (0 for unlabelled candidates).
        dims, weights: prefix sizes 𝓜 and their weights.
        temperature: τ > 0 (cosines lie in [-1, 1]: 0.05 makes a gap of 0.1 a factor e²).
        anchors: ``[Q, N]`` bool, the labelled pairs that act as j (default all labelled).

    Example:
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> docs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> loss = contrastive_loss(q, docs, torch.tensor([[1.0, 0.0]]), (2,), (1.0,), 1.0)
        >>> round(float(loss), 4)  # -log(e / (e + 1))
        0.3133
    """
    if temperature <= 0:
        raise ValueError(f"contrastive_loss: temperature must be > 0, got {temperature}")
    query_of_pair, doc_of_pair = _anchor_pairs("contrastive_loss", relevance, anchors)
    if query_of_pair.numel() == 0:
        raise ValueError("contrastive_loss: no labelled (query, document) pair in the batch")
    grade = relevance[query_of_pair, doc_of_pair]  # y_ij, [P]
    # [P, N]: j itself and every candidate graded below it; the rest leave the softmax.
    competing = relevance[query_of_pair] < grade.unsqueeze(1)
    competing[torch.arange(len(doc_of_pair)), doc_of_pair] = True
    pair_queries = adapted_queries[query_of_pair]
    terms = []
    for pair_scores in prefix_cosines(pair_queries, adapted_documents, dims):
        logits = (pair_scores / temperature).masked_fill(~competing, float("-inf"))
        positive = logits.gather(1, doc_of_pair.unsqueeze(1)).squeeze(1)
        terms.append(((torch.logsumexp(logits, dim=1) - positive) * grade).sum() / grade.sum())
    return _weighted_over_prefixes(terms, weights)


@dataclass(frozen=True)
class LossTerms:
    """The terms of one step, kept separately for logging."""

    total: torch.Tensor
    topk: torch.Tensor
    pairwise: torch.Tensor
    reconstruction: torch.Tensor
    ranking: torch.Tensor | None = None
    contrastive: torch.Tensor | None = None

    def as_floats(self) -> dict[str, float]:
        values = {
            "loss": self.total,
            "topk": self.topk,
            "pairwise": self.pairwise,
            "reconstruction": self.reconstruction,
            "ranking": self.ranking,
            "contrastive": self.contrastive,
        }
        return {name: float(value.detach()) for name, value in values.items() if value is not None}


def unsupervised_objective(
    topk: torch.Tensor,
    pairwise: torch.Tensor,
    reconstruction: torch.Tensor,
    alpha: float,
    beta: float,
) -> LossTerms:
    """Eq. 4: ``L_topk + α·L_pair + β·L_rec``."""
    return LossTerms(
        total=topk + alpha * pairwise + beta * reconstruction,
        topk=topk,
        pairwise=pairwise,
        reconstruction=reconstruction,
    )


def supervised_objective(
    unsupervised: LossTerms,
    ranking: torch.Tensor,
    gamma: float,
    contrastive: torch.Tensor | None = None,
    delta: float = 0.0,
) -> LossTerms:
    """Eq. 6: Eq. 4 plus ``γ·L_rank``, plus ``δ·L_contrastive`` when that term is on."""
    total = unsupervised.total + gamma * ranking
    if contrastive is not None:
        total = total + delta * contrastive
    return LossTerms(
        total=total,
        topk=unsupervised.topk,
        pairwise=unsupervised.pairwise,
        reconstruction=unsupervised.reconstruction,
        ranking=ranking,
        contrastive=contrastive,
    )
