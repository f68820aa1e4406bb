"""Typed configs: params.yaml parses, bad values fail at construction with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from components.config import LossConfig, MethodConfig, default_prefix_dims, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_validates_into_typed_configs() -> None:
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params.method, MethodConfig)
    assert params.method.loss.resolve_dims(384)[0] == (16, 32, 64, 128, 256, 384)


def test_dotted_overrides_apply(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml", {"method.train.seed": 5, "method.loss.top_k": 3})
    assert params.method.train.seed == 5 and params.method.loss.top_k == 3


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("method:\n  loss:\n    alpah: 1.0\n")
    with pytest.raises(ValidationError, match="alpah"):
        load_params(path)


def test_default_prefix_dims() -> None:
    assert default_prefix_dims(384) == (16, 32, 64, 128, 256, 384)
    assert default_prefix_dims(768) == (16, 32, 64, 128, 256, 512, 768)
    assert default_prefix_dims(10) == (10,)


def test_prefix_validation_messages() -> None:
    with pytest.raises(ValidationError, match="one weight per prefix size"):
        LossConfig(prefix_dims=(8, 16), prefix_weights=(1.0,))
    with pytest.raises(ValidationError, match="duplicates"):
        LossConfig(prefix_dims=(8, 8))
    with pytest.raises(ValidationError, match="must be positive"):
        LossConfig(prefix_dims=(0, 8))
    with pytest.raises(ValueError, match=r"exceed the embedding dimension d=16"):
        LossConfig(prefix_dims=(8, 32)).resolve_dims(16)


def test_prefix_weights_are_normalised() -> None:
    dims, weights = LossConfig(prefix_dims=(4, 8), prefix_weights=(1.0, 3.0)).resolve_dims(8)
    assert dims == (4, 8) and weights == (0.25, 0.75)
