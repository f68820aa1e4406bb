"""The provider table (``components/embedding/specs.py``) and what reads it."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest
from helpers.stages import REPO

from components.embedding.config import EmbeddingConfig
from components.embedding.providers import EmbeddingProvider
from components.embedding.specs import PROVIDERS, ProviderName, spec_for

PROVIDER_MODULES = tuple(
    f"components.embedding.{m}" for m in ("local", "openai_provider", "google_provider")
)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_row_is_complete(name: str) -> None:
    spec = spec_for(name)
    assert spec.name == name
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
