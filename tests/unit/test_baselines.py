"""Training-free baselines: the new ones against hand-computed cases, and the one registry
that the evaluate stage, the gate, the review report and the DVC plot all take them from."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from helpers.stages import REPO, subprocess_env
from torch.nn import functional as F

from components.baselines import (
    BASELINE_NAMES,
    BASELINES,
    PCALayerNorm,
    PCAProjection,
    Whitening,
    baseline_names,
    fit_baselines,
)
from components.params import load_params
from components.registry.config import RegistryConfig
from components.registry.evaluation_set import EvaluationSet, compare_on_set
from components.registry.packaging import pick_adaptor_method
from components.stages.evaluate import METHOD_ORDER


def cross_corpus(a: float = 2.0, b: float = 0.5, c: float = 0.1) -> torch.Tensor:
    """±a·e₁, ±b·e₂, ±c·e₃ shifted by (1, 1, 1): mean (1, 1, 1), covariance
    diag(a², b², c²)/3, so the principal axes are e₁, e₂, e₃ in that order."""
    axes = torch.diag(torch.tensor([a, b, c]))
    return torch.cat([axes, -axes]) + 1.0


def test_whitening_divides_each_principal_coordinate_by_its_standard_deviation() -> None:
    a, b, c = 2.0, 0.5, 0.1
    whitening = Whitening.fit(cross_corpus(a, b, c))
    x = torch.tensor([[1.3, 0.6, 1.2]])
    centred = x - 1.0
    expected = centred[0] / torch.tensor([a, b, c]) * math.sqrt(3)  # / sqrt(eigenvalue)
    got = whitening.coordinates(x, 3)[0]
    # up to each axis' sign, and the ε·sqrt(λ₁) guard: 2e-5 relative on the smallest axis
    torch.testing.assert_close(got.abs(), expected.abs(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        whitening.embed(x, 2)[0].abs(), F.normalize(expected[:2], dim=0).abs(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_whitened_corpus_has_identity_covariance_in_every_prefix(m: int) -> None:
    g = torch.Generator().manual_seed(3)
    mixing = torch.randn(5, 5, generator=g)
    corpus = torch.randn(400, 5, generator=g) @ mixing + torch.randn(5, generator=g)
    z = Whitening.fit(corpus).coordinates(corpus, m).to(torch.float64)
    torch.testing.assert_close(
        z.mean(dim=0), torch.zeros(m, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        z.T @ z / len(z), torch.eye(m, dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_whitening_of_a_rank_deficient_corpus_stays_finite() -> None:
    corpus = F.normalize(torch.randn(3, 6), dim=-1)  # n < d: zero-variance directions
    out = Whitening.fit(corpus).embed(torch.randn(4, 6), 6)
    assert bool(torch.isfinite(out).all())


def test_pca_layernorm_rows_have_zero_mean_and_unit_variance_before_normalising() -> None:
    g = torch.Generator().manual_seed(4)
    corpus = F.normalize(torch.randn(60, 8, generator=g), dim=-1)
    method, pca = PCALayerNorm.fit(corpus), PCAProjection.fit(corpus)
    for m in (2, 3, 8):
        z = method.coordinates(corpus, m)
        torch.testing.assert_close(z.mean(dim=1), torch.zeros(60), atol=1e-5, rtol=0)
        # unit variance where the row's own variance dwarfs LayerNorm's ε = 1e-5
        spread = pca.coordinates(corpus, m).var(dim=1, unbiased=False) > 1e-2
        assert int(spread.sum()) >= 10
        variance = z.var(dim=1, unbiased=False)[spread]
        torch.testing.assert_close(variance, torch.ones_like(variance), atol=2e-3, rtol=0)


def test_pca_layernorm_is_centred_pca_then_layernorm_over_the_kept_m() -> None:
    # Principal axes e₁, e₂, e₃ (cross_corpus): the PCA coordinates of x are ±(x − 1).
    method = PCALayerNorm.fit(cross_corpus())
    x = torch.tensor([[1.9, 1.2, 0.1]])
    pca = (x - 1.0)[0]  # (0.9, 0.2, -0.9) up to each axis' sign
    # m = 2: LayerNorm over two coordinates leaves ±(1, −1)/√2, the sign of z₁ − z₂.
    two = method.embed(x, 2)[0]
    torch.testing.assert_close(two.abs(), torch.full((2,), 1 / math.sqrt(2)))
    assert float(two[0] * two[1]) < 0
    # m = 3 with the same signs as the fitted components: normalize(z − mean(z)).
    signs = torch.sign(torch.diagonal(method.matrix))
    z = pca * signs
    torch.testing.assert_close(method.embed(x, 3)[0], F.normalize(z - z.mean(), dim=0))
    # not a prefix of the full-d vector (the LayerNorm is over the m kept coordinates)
    assert not torch.allclose(method.embed(x, 2), F.normalize(method.embed(x, 3)[:, :2], dim=-1))


def test_pca_layernorm_refuses_one_dimension() -> None:
    method = PCALayerNorm.fit(cross_corpus())
    with pytest.raises(ValueError, match=r"^pca_layernorm: dim must be at least 2 .*got 1$"):
        method.embed(torch.ones(1, 3), 1)


def test_pca_layernorm_uses_the_same_components_as_pca() -> None:
    corpus = F.normalize(torch.randn(30, 6), dim=-1)
    pca, ln = PCAProjection.fit(corpus), PCALayerNorm.fit(corpus)
    torch.testing.assert_close(ln.matrix, pca.matrix)
    torch.testing.assert_close(ln.shift, pca.shift)


def test_every_registered_baseline_gives_unit_vectors_of_every_size() -> None:
    g = torch.Generator().manual_seed(5)
    corpus = F.normalize(torch.randn(40, 6, generator=g), dim=-1)
    queries = F.normalize(torch.randn(7, 6, generator=g), dim=-1)
    fitted = fit_baselines(corpus)
    assert list(fitted) == list(BASELINE_NAMES)
    for name, method in fitted.items():
        for m in (2, 3, 6):
            out = method.embed(queries, m)
            assert out.shape == (7, m), name
            torch.testing.assert_close(out.norm(dim=1), torch.ones(7), msg=name)


def test_unknown_baselines_are_refused_with_the_known_names() -> None:
    corpus = torch.randn(10, 4)
    with pytest.raises(ValueError) as caught:
        fit_baselines(corpus, ["pca", "zca", "lda"])
    assert str(caught.value) == (
        "unknown baseline(s) ['zca', 'lda']; choose from "
        "['base', 'pca', 'svd_rotation', 'pca_layernorm', 'whitening']"
    )
    assert baseline_names(None) == BASELINE_NAMES
    assert baseline_names(["whitening", "base", "whitening"]) == ("whitening", "base")


def test_importing_the_registry_loads_no_torch() -> None:
    code = "import sys, components.baselines; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert out.stdout.strip() == "False"


def test_stage_table_plot_and_labels_follow_the_registry() -> None:
    assert METHOD_ORDER[: len(BASELINE_NAMES)] == BASELINE_NAMES
    assert set(METHOD_ORDER) - set(BASELINE_NAMES) == {"adaptor_unsupervised", "adaptor_supervised"}
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    (plot,) = [p["runs/evaluation/ndcg_vs_dim.csv"] for p in plots]
    assert plot["y"] == list(METHOD_ORDER)
    assert all(BASELINES[name].label for name in BASELINE_NAMES)


def test_the_gate_compares_every_baseline_by_default() -> None:
    assert RegistryConfig().baselines is None
    assert load_params(REPO / "params.yaml").registry.baselines is None
    g = torch.Generator().manual_seed(6)
    corpus = F.normalize(torch.randn(30, 4, generator=g), dim=-1)
    data = EvaluationSet(
        corpus.numpy(),
        [f"d{i}" for i in range(30)],
        corpus[:5].numpy(),
        [f"q{i}" for i in range(5)],
        pd.DataFrame(
            {
                "query_id": [f"q{i}" for i in range(5)],
                "doc_id": [f"d{i}" for i in range(5)],
                "score": 1,
            }
        ),
    )
    report = compare_on_set(data, {}, dims=[2, 4])
    assert list(dict.fromkeys(report.table["method"])) == list(BASELINE_NAMES)
    chosen = compare_on_set(data, {}, dims=[2], baselines=["whitening"])
    assert set(chosen.table["method"]) == {"base", "whitening"}


def test_a_new_baseline_is_never_taken_for_the_registered_adaptor() -> None:
    assert pick_adaptor_method(["base", "whitening", "pca_layernorm", "mine"]) == "mine"
