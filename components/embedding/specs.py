"""The provider table: every fact about a provider, in one frozen row.

Configuration validation and defaults (:mod:`.config`), the cache identity and the factory
(:mod:`.providers`), planning and scheduling (:mod:`.extract`) and the expected vector
dimension (:mod:`.dimensions`) read a :class:`ProviderSpec` instead of comparing provider
names. This module imports nothing of the package, so every other module, the provider
modules included, can import it.

Adding a provider: add one row to :data:`PROVIDERS` (limits, defaults, key variable, task
types, documented dimensions, and the factory as ``"module:Class"``) and write that one
module, a subclass of :class:`~components.embedding.providers.EmbeddingProvider` whose
constructor takes ``(config, identity)`` and imports its SDK inside ``__init__`` (so a fully
cached run never loads it). ``EmbeddingConfig.provider`` accepts the new name at once.

Example:
    >>> spec_for("google").max_batch_size, spec_for("google").task_types["query"]
    (100, 'RETRIEVAL_QUERY')
    >>> spec_for("local").is_api, spec_for("local").requires_model
    (False, False)
    >>> spec_for("precomputed").reads_vector_files, spec_for("precomputed").factory
    (True, None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal


def _frozen(mapping: Mapping[str, str] | Mapping[str, int]) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ProviderSpec:
    """What the pipeline knows about one provider before building it.

    Attributes:
        name: the ``embedding.provider`` value.
        is_api: a network API (byte-estimated tokens, token budgets per request, concurrent
            requests, no empty inputs) rather than a model directory run in this process
            (its own tokenizer and limits, its output size known once loaded).
        factory: ``"module:Class"`` of the provider, imported only when one is built.
        max_batch_size: most inputs one request may carry.
        default_max_input_tokens: most tokens per input when ``max_input_tokens`` is not
            set (``None``: the model's own ``max_seq_length`` decides).
        default_max_batch_tokens: most tokens summed over one request by default.
        default_key_env: environment variable read for the key when ``api_key_env`` is not
            set; ``None``: the provider needs no key.
        task_types: the task sent per kind (``query`` / ``document``) where it changes the
            vectors; part of the cache key. For a local model these are prompt names, used
            only if the model defines such prompts.
        example_model: named in the "model is required" message; ``None``: ``model`` is
            optional (the local provider has a bundled default).
        model_prefix: stripped from configured model ids (``models/`` for Gemini).
        documented_dimensions: native output sizes of hosted models from the provider's
            documentation (trusted only on the public endpoint, without ``base_url``).
        reads_vector_files: no model at all: the vectors ship with the dataset
            (``<dataset>/embeddings/``, :mod:`.precomputed`) and the embed stage reads them;
            ``factory`` is then ``None`` (nothing embeds text).
    """

    name: str
    is_api: bool
    factory: str | None
    max_batch_size: int
    default_max_input_tokens: int | None = None
    default_max_batch_tokens: int | None = None
    default_key_env: str | None = None
    task_types: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    example_model: str | None = None
    model_prefix: str = ""
    documented_dimensions: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    reads_vector_files: bool = False

    @property
    def requires_model(self) -> bool:
        """``embedding.model`` must be set."""
        return self.example_model is not None

    @property
    def needs_key(self) -> bool:
        """The provider reads an API key (so ``api_key_env`` makes sense)."""
        return self.default_key_env is not None

    @property
    def estimates_tokens_from_bytes(self) -> bool:
        """Token counts are estimated from UTF-8 length (no tokenizer is downloaded);
        otherwise the model's own tokenizer counts and ``len`` sizes the batches."""
        return self.is_api

    @property
    def sends_empty_as_space(self) -> bool:
        """Empty inputs are rejected by the provider, so they are sent as ``" "``."""
        return self.is_api

    @property
    def limits_batch_tokens(self) -> bool:
        """Batches are also cut by ``effective_max_batch_tokens`` (not only by count)."""
        return self.is_api

    @property
    def runs_batches_concurrently(self) -> bool:
        """Up to ``max_concurrency`` requests in flight; else one batch after another."""
        return self.is_api

    @property
    def reads_model_directory(self) -> bool:
        """The model is a local directory: identified by a fingerprint of its files, with
        task types from its prompts, the token limit from its ``max_seq_length`` and the
        output size from the loaded model."""
        return not self.is_api and not self.reads_vector_files


#: The provider table (see "Adding a provider" above).
PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ProviderSpec(
                name="local",
                is_api=False,
                factory="components.embedding.local:LocalProvider",
                # No API limit: batch size only trades memory for speed.
                max_batch_size=100_000,
                task_types=_frozen({"query": "query", "document": "document"}),
            ),
            ProviderSpec(
                name="openai",
                is_api=True,
                factory="components.embedding.openai_provider:OpenAIProvider",
                max_batch_size=2048,
                default_max_input_tokens=8191,  # text-embedding-3
                default_max_batch_tokens=300_000,
                default_key_env="OPENAI_API_KEY",
                example_model="text-embedding-3-small",
                documented_dimensions=_frozen(
                    {
                        "text-embedding-3-small": 1536,
                        "text-embedding-3-large": 3072,
                        "text-embedding-ada-002": 1536,
                    }
                ),
            ),
            ProviderSpec(
                name="google",
                is_api=True,
                factory="components.embedding.google_provider:GoogleProvider",
                max_batch_size=100,  # batchEmbedContents
                default_max_input_tokens=2048,  # Gemini embedding models
                default_key_env="GEMINI_API_KEY",
                task_types=_frozen({"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"}),
                example_model="gemini-embedding-001",
                model_prefix="models/",
                documented_dimensions=_frozen(
                    {
                        "gemini-embedding-001": 3072,
                        "text-embedding-004": 768,
                        "text-embedding-005": 768,
                        "text-multilingual-embedding-002": 768,
                        "embedding-001": 768,
                    }
                ),
            ),
            ProviderSpec(
                name="precomputed",
                is_api=False,
                factory=None,  # the embed stage reads <dataset>/embeddings/ instead
                max_batch_size=100_000,  # unused: nothing is batched
                reads_vector_files=True,
            ),
        )
    }
)

#: The accepted ``embedding.provider`` values, built from the table (pydantic validates
#: against it).
ProviderName = Literal[tuple(PROVIDERS)]  # type: ignore[valid-type]


def spec_for(provider: str) -> ProviderSpec:
    """The row of ``provider``.

    Raises:
        ValueError: an unknown provider name.
    """
    try:
        return PROVIDERS[provider]
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise ValueError(f"unknown embedding provider {provider!r}; known: {known}") from None
