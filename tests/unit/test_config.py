"""Typed configs: params.yaml parses, bad values fail at construction with clear messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.config import LossConfig, default_prefix_dims


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
