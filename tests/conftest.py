"""Shared test setup: offline, telemetry off, deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import torch

from components.runtime import configure_environment

if TYPE_CHECKING:
    from helpers.postgres import PostgresCluster

configure_environment()
# Test tensors are tiny: a second intra-op thread only adds synchronisation, and on a busy
# 2-core machine it makes small trainings many times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with databases ``mlflow`` and ``prefect``
    (roles of the same names, password ``postgres.password``); stopped and deleted at the
    end of the session. Skipped only where the server binaries are not installed."""
    from helpers.postgres import find_bin_dir, postgres_cluster

    if find_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with postgres_cluster(databases=("mlflow", "prefect")) as cluster:
        yield cluster
