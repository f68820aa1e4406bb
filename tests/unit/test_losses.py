"""Each loss (Eq. 1-5) against a small case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from components.losses import (
    contrastive_loss,
    pairwise_loss,
    prefix_cosines,
    prefix_normalize,
    ranking_loss,
    reconstruction_loss,
    supervised_objective,
    topk_loss,
    unsupervised_objective,
)


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_pairwise_loss_hand_computed() -> None:
    original = t([[1, 0], [0, 1]])  # cos = 0 at full d
    adapted = t([[3, 4], [4, 3]])  # cos_2 = 24/25, cos_1 = 1 (both prefixes positive)
    # |0 - 0.96| at m=2 and |0 - 1| at m=1, weighted 1/2 each.
    value = pairwise_loss(original, adapted, dims=(1, 2), weights=(0.5, 0.5))
    assert value.item() == pytest.approx(0.98, abs=1e-6)


def test_pairwise_loss_targets_full_d_original_not_truncated() -> None:
    original = t([[1, 1], [1, -1]])  # full-d cos 0, but cos of first coordinates would be 1
    value = pairwise_loss(original, original, dims=(1,), weights=(1.0,))
    assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_topk_loss_hand_computed() -> None:
    anchor = t([[1, 0]])
    neighbours = t([[0.6, 0.8], [0.8, 0.6]]).unsqueeze(0)  # targets 0.6 and 0.8
    adapted_anchor = t([[0, 1]])
    adapted_neighbours = t([[0.6, 0.8], [1, 0]]).unsqueeze(0)  # predictions 0.8 and 0.0
    value = topk_loss(
        anchor, adapted_anchor, neighbours, adapted_neighbours, dims=(2,), weights=(1.0,)
    )
    assert value.item() == pytest.approx((0.2 + 0.8) / 2, abs=1e-6)


def test_reconstruction_loss_is_mean_absolute_residual() -> None:
    assert reconstruction_loss(t([[1, -2], [0, 4]])).item() == pytest.approx(7 / 4)


def test_ranking_loss_hand_computed() -> None:
    query = t([[1, 0]])
    documents = t([[1, 0], [0, 1], [-1, 0]])  # scores 1, 0, -1
    relevance = t([[2, 1, 0]])
    # ordered pairs (0,1) gain 1, (0,2) gain 2, (1,2) gain 1; each log(1 + exp(s_k - s_j)).
    expected = (
        1 * math.log1p(math.exp(-1)) + 2 * math.log1p(math.exp(-2)) + 1 * math.log1p(math.exp(-1))
    ) / 3
    value = ranking_loss(query, documents, relevance, dims=(2,), weights=(1.0,))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_ranking_loss_counts_only_the_anchor_pairs_as_j() -> None:
    query = t([[1, 0]])
    documents = t([[1, 0], [0, 1], [-1, 0]])  # scores 1, 0, -1
    relevance = t([[2, 1, 0]])
    anchors = torch.tensor([[False, True, False]])  # only the grade-1 document acts as j
    # j=1 beats k=2 (gain 1); k=0 has the higher grade, so it is no negative for j=1.
    value = ranking_loss(query, documents, relevance, dims=(2,), weights=(1.0,), anchors=anchors)
    assert value.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    with pytest.raises(ValueError, match="anchors must be labelled pairs"):
        unlabelled = torch.tensor([[False, False, True]])
        ranking_loss(query, documents, relevance, (2,), (1.0,), anchors=unlabelled)


def test_ranking_loss_matches_dense_pairwise_definition() -> None:
    generator = torch.Generator().manual_seed(3)
    queries = torch.randn(4, 8, generator=generator)
    documents = torch.randn(9, 8, generator=generator)
    relevance = torch.randint(0, 3, (4, 9), generator=generator).float()
    dims, weights = (4, 8), (0.25, 0.75)
    dense = 0.0
    for m, w in zip(dims, weights, strict=True):
        q = torch.nn.functional.normalize(queries[:, :m], dim=-1)
        d = torch.nn.functional.normalize(documents[:, :m], dim=-1)
        s = q @ d.T
        total, count = 0.0, 0
        for i in range(4):
            for j in range(9):
                for k in range(9):
                    if relevance[i, j] > relevance[i, k]:
                        gain = float(relevance[i, j] - relevance[i, k])
                        total += gain * math.log1p(math.exp(float(s[i, k] - s[i, j])))
                        count += 1
        dense += w * total / count
    value = ranking_loss(queries, documents, relevance, dims, weights)
    assert value.item() == pytest.approx(dense, rel=1e-5)


def test_ranking_loss_rejects_batches_without_ordered_pairs() -> None:
    with pytest.raises(ValueError, match="no candidate pair"):
        ranking_loss(t([[1, 0]]), t([[1, 0], [0, 1]]), t([[1, 1]]), (2,), (1.0,))


def test_objectives_combine_terms_with_weights() -> None:
    terms = unsupervised_objective(
        torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), alpha=0.5, beta=2.0
    )
    assert terms.total.item() == pytest.approx(1 + 1 + 6)
    full = supervised_objective(terms, torch.tensor(4.0), gamma=0.25)
    assert full.total.item() == pytest.approx(9.0)
    assert full.as_floats()["ranking"] == pytest.approx(4.0)


def test_prefix_cosines_equal_one_normalised_product_per_size() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 12, generator=generator), torch.randn(7, 12, generator=generator)
    neighbours = torch.randn(5, 3, 12, generator=generator)
    dims = (12, 3, 8)  # any order: the result follows it
    for m, cosines in zip(dims, prefix_cosines(a, b, dims), strict=True):
        expected = prefix_normalize(a, m) @ prefix_normalize(b, m).T
        assert cosines.shape == (5, 7) and torch.allclose(cosines, expected, atol=1e-6)
    for m, cosines in zip(dims, prefix_cosines(a, neighbours, dims, rowwise=True), strict=True):
        expected = torch.einsum(
            "ad,akd->ak", prefix_normalize(a, m), prefix_normalize(neighbours, m)
        )
        assert cosines.shape == (5, 3) and torch.allclose(cosines, expected, atol=1e-6)
    zero = torch.zeros(1, 12)  # a zero prefix: cosine 0 and finite gradients, like F.normalize
    zero.requires_grad_()
    (value,) = prefix_cosines(zero, b, (4,))
    value.sum().backward()
    assert torch.equal(value, torch.zeros(1, 7)) and bool(torch.isfinite(zero.grad).all())


def test_contrastive_loss_hand_computed() -> None:
    # Query 0 has grades 2 (doc 0) and 1 (doc 1); query 1 has grade 1 on doc 2.
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    docs = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    relevance = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    tau = 0.5
    s = queries @ docs.T  # unit rows: cosines
    # (0, doc 0), grade 2: docs 1 and 2 are graded lower, both compete.
    l00 = -math.log(math.exp(s[0, 0] / tau) / sum(math.exp(s[0, k] / tau) for k in range(3)))
    # (0, doc 1), grade 1: doc 0 (grade 2) leaves the softmax; doc 2 competes.
    l01 = -math.log(math.exp(s[0, 1] / tau) / (math.exp(s[0, 1] / tau) + math.exp(s[0, 2] / tau)))
    # (1, doc 2), grade 1: docs 0 and 1 (unlabelled for query 1) compete.
    l12 = -math.log(math.exp(s[1, 2] / tau) / sum(math.exp(s[1, k] / tau) for k in range(3)))
    expected = (2 * l00 + 1 * l01 + 1 * l12) / 4
    loss = contrastive_loss(queries, docs, relevance, (2,), (1.0,), tau)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Prefix sizes: at m=1 each cosine is the sign of the first coordinates' product.
    at_one = contrastive_loss(queries, docs, relevance, (1, 2), (0.5, 0.5), tau)
    truncated = contrastive_loss(queries, docs, relevance, (1,), (1.0,), tau)
    assert float(at_one) == pytest.approx(0.5 * float(truncated) + 0.5 * expected, rel=1e-6)


def test_contrastive_loss_counts_only_the_anchor_pairs_and_checks_its_inputs() -> None:
    queries = torch.tensor([[1.0, 0.0]])
    docs = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    relevance = torch.tensor([[1.0, 1.0, 0.0]])
    anchors = torch.tensor([[True, False, False]])
    only_first = contrastive_loss(queries, docs, relevance, (2,), (1.0,), 1.0, anchors=anchors)
    # Doc 1 is as relevant as doc 0: it is not a negative of doc 0, only doc 2 competes.
    assert float(only_first) == pytest.approx(-math.log(math.e / (math.e + 1.0)), rel=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        contrastive_loss(queries, docs, relevance, (2,), (1.0,), 0.0)
    with pytest.raises(ValueError, match="no labelled"):
        contrastive_loss(queries, docs, torch.zeros(1, 3), (2,), (1.0,), 1.0)
    with pytest.raises(ValueError, match="anchors must be labelled"):
        contrastive_loss(queries, docs, relevance, (2,), (1.0,), 1.0, anchors=~anchors)


def test_supervised_objective_adds_the_weighted_contrastive_term() -> None:
    zero = torch.tensor(0.0)
    unsupervised = unsupervised_objective(torch.tensor(1.0), zero, zero, 1.0, 1.0)
    terms = supervised_objective(unsupervised, torch.tensor(2.0), 0.5, torch.tensor(3.0), 2.0)
    assert float(terms.total) == pytest.approx(1.0 + 0.5 * 2.0 + 2.0 * 3.0)
    assert terms.as_floats()["contrastive"] == pytest.approx(3.0)
    assert "contrastive" not in supervised_objective(unsupervised, zero, 1.0).as_floats()
