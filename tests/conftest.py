"""Shared test setup: offline, telemetry off, deterministic."""

from __future__ import annotations

import pytest
import torch

from components.runtime import configure_environment

configure_environment()
# Test tensors are tiny: a second intra-op thread only adds synchronisation, and on a busy
# 2-core machine it makes small trainings many times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
