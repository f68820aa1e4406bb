"""Shared test setup: offline, telemetry off, deterministic."""

from __future__ import annotations

import pytest
import torch

from components.runtime import configure_environment

configure_environment()


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
