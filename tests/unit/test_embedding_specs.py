"""The provider table (``components/embedding/specs.py``) and what reads it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from helpers.embedding_servers import OpenAITestServer, expected_matrix
from helpers.embedding_servers.helpers import DIM, fast_config, write_beir_dataset
from helpers.stages import REPO

import components.embedding.extract as extract
import components.embedding.providers as providers
from components.data import load_dataset
from components.embedding import embed_dataset
from components.embedding.config import EmbeddingConfig
from components.embedding.errors import ProviderSetupError
from components.embedding.providers import EmbeddingProvider, close_providers
from components.embedding.specs import PROVIDERS, ProviderName, spec_for

KEY = "test-key-specs-0001"
PROVIDER_MODULES = tuple(
    f"components.embedding.{m}" for m in ("local", "openai_provider", "google_provider")
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", KEY)
    close_providers()  # the first embed_dataset below builds its provider
    with OpenAITestServer(api_key=KEY) as srv:
        yield srv
    close_providers()


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_row_is_complete(name: str) -> None:
    spec = spec_for(name)
    assert spec.name == name
    if spec.reads_vector_files:  # precomputed: no model, nothing to build
        assert spec.factory is None and not spec.is_api and not spec.reads_model_directory
        with pytest.raises(ProviderSetupError, match="embeds no text.*<dataset>/embeddings/"):
            providers.create_provider(EmbeddingConfig(provider=name))
        return
    assert spec.factory is not None
    module, _, cls = spec.factory.partition(":")
    factory = getattr(__import__(module, fromlist=[cls]), cls)
    assert issubclass(factory, EmbeddingProvider)
    assert set(spec.task_types) in (set(), {"query", "document"})
    assert spec.max_batch_size >= 1
    # API providers need a model id (and say which); a local one has a bundled default.
    assert spec.requires_model == spec.is_api


def test_config_accepts_exactly_the_table() -> None:
    assert set(get_args(ProviderName)) == set(PROVIDERS)
    with pytest.raises(ValueError, match="unknown embedding provider 'nope'"):
        spec_for("nope")
    assert EmbeddingConfig(provider="google", model="models/x").spec is PROVIDERS["google"]


def test_providers_module_imports_no_provider_module() -> None:
    code = (
        "import sys, components.embedding.providers\n"
        f"loaded = [m for m in {PROVIDER_MODULES!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        # and a provider module imported first is no import circle either
        "import components.embedding.google_provider\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_provider_identity_is_computed_once_per_embed_dataset(
    server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[EmbeddingConfig] = []
    original = providers.provider_identity

    def counting(config: EmbeddingConfig) -> providers.ProviderIdentity:
        calls.append(config)
        return original(config)

    # Every module that calls it by name: the orchestrator and the provider factory.
    monkeypatch.setattr(extract, "provider_identity", counting)
    monkeypatch.setattr(providers, "provider_identity", counting)
    dataset = load_dataset(write_beir_dataset(tmp_path / "data", 20, 5))
    config = fast_config(server, tmp_path / "cache", shard_size=6)  # several shards per kind
    first = embed_dataset(dataset, config, tmp_path / "out")
    assert len(calls) == 1 and server.ok_requests()
    np.testing.assert_allclose(
        first.corpus, expected_matrix(dataset.corpus_texts(), DIM), rtol=1e-6
    )
    calls.clear()
    embed_dataset(dataset, config, tmp_path / "again")  # all cached
    assert len(calls) == 1
