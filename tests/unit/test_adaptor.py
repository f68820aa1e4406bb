"""The adaptor: identity at initialisation, rotation keeps cosine, exact save/load, checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from components.adaptor import (
    MatryoshkaAdaptor,
    check_embeddings,
    fit_rotation,
    load_adaptor,
    save_adaptor,
)
from components.config import AdaptorConfig


def unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_identity_at_initialisation_without_rotation() -> None:
    x = unit(16, 12)
    adaptor = MatryoshkaAdaptor(12, AdaptorConfig(use_rotation=False, num_hidden_layers=2))
    assert torch.equal(adaptor(x), x)


def test_rotation_start_equals_rotation_and_preserves_full_d_cosine() -> None:
    corpus = unit(50, 10)
    rotation = fit_rotation(corpus)
    assert torch.allclose(rotation.T @ rotation, torch.eye(10), atol=1e-5)
    adaptor = MatryoshkaAdaptor(10, AdaptorConfig(use_rotation=True), rotation)
    out = adaptor(corpus)
    assert torch.allclose(out, corpus @ rotation)
    assert torch.allclose(
        F.normalize(out, dim=-1) @ F.normalize(out, dim=-1).T, corpus @ corpus.T, atol=1e-5
    )


def test_rotation_orders_directions_by_energy() -> None:
    # Energy concentrated in coordinate 3: the first rotated coordinate must be it.
    x = unit(200, 6) * torch.tensor([0.1, 0.1, 0.1, 5.0, 0.1, 0.1])
    rotation = fit_rotation(x)
    assert rotation[:, 0].abs().argmax().item() == 3
    energy = ((x @ rotation) ** 2).sum(dim=0)
    assert torch.all(energy[:-1] >= energy[1:] - 1e-4)


def test_rotation_is_deterministic() -> None:
    corpus = unit(40, 8)
    assert torch.equal(fit_rotation(corpus), fit_rotation(corpus.clone()))


def test_embed_truncates_and_normalises() -> None:
    adaptor = MatryoshkaAdaptor(8, AdaptorConfig(use_rotation=False))
    x = unit(5, 8)
    out = adaptor.embed(x, dim=3)
    assert out.shape == (5, 3)
    assert torch.allclose(out, F.normalize(x[:, :3], dim=-1))
    with pytest.raises(ValueError, match=r"dim must be in \[1, 8\]"):
        adaptor.embed(x, dim=9)


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    corpus = unit(30, 8)
    adaptor = MatryoshkaAdaptor(
        8, AdaptorConfig(use_rotation=True, hidden_dim=16), fit_rotation(corpus)
    )
    with torch.no_grad():
        for p in adaptor.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_adaptor(adaptor, tmp_path / "adaptor", metadata={"trained_dims": [4, 8]})
    loaded, metadata = load_adaptor(path, expected_dim=8)
    assert metadata == {"trained_dims": [4, 8]}
    assert loaded.config == adaptor.config
    for key, value in adaptor.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert torch.equal(loaded(corpus), adaptor.eval()(corpus))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left


def test_save_replaces_an_existing_directory(tmp_path: Path) -> None:
    first = MatryoshkaAdaptor(4, AdaptorConfig(use_rotation=False))
    save_adaptor(first, tmp_path / "a", metadata={"version": 1})
    save_adaptor(first, tmp_path / "a", metadata={"version": 2})
    assert load_adaptor(tmp_path / "a")[1] == {"version": 2}


def test_load_checks_dimension(tmp_path: Path) -> None:
    save_adaptor(MatryoshkaAdaptor(8, AdaptorConfig(use_rotation=False)), tmp_path / "a")
    with pytest.raises(
        ValueError, match="dimension mismatch: adaptor was trained for d=8, embeddings have d=16"
    ):
        load_adaptor(tmp_path / "a", expected_dim=16)
    with pytest.raises(FileNotFoundError, match="not an adaptor directory"):
        load_adaptor(tmp_path)


def test_forward_rejects_wrong_dimension() -> None:
    adaptor = MatryoshkaAdaptor(8, AdaptorConfig(use_rotation=False))
    with pytest.raises(ValueError, match="dimension mismatch: adaptor expects d=8, got d=4"):
        adaptor(unit(2, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_embeddings_rejects_non_finite_values(bad: float) -> None:
    x = unit(4, 3)
    x[2, 1] = bad
    with pytest.raises(
        ValueError,
        match=r"corpus: 1 row\(s\) contain NaN or infinite values "
        r"\(first: row 2\)",
    ):
        check_embeddings(x, "corpus")


def test_check_embeddings_rejects_empty_and_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="empty matrix"):
        check_embeddings(torch.zeros(0, 4), "corpus")
    with pytest.raises(ValueError, match="expected a 2-D matrix"):
        check_embeddings(torch.zeros(4), "corpus")
    with pytest.raises(ValueError, match="expected d=8, got d=4"):
        check_embeddings(torch.zeros(2, 4), "queries", dim=8)


def test_rotation_config_must_match_rotation_argument() -> None:
    with pytest.raises(ValueError, match="no rotation was given"):
        MatryoshkaAdaptor(4, AdaptorConfig(use_rotation=True))
    with pytest.raises(ValueError, match="use_rotation is false"):
        MatryoshkaAdaptor(4, AdaptorConfig(use_rotation=False), torch.eye(4))
