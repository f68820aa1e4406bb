"""Embedding extraction: texts -> cached, resumable, fault-tolerant base embeddings.

Providers (``local`` sentence-transformers, ``openai``-compatible APIs, ``google`` Gemini /
Vertex) sit behind one interface; a content-addressed cache makes re-runs free and resumes
after crashes; shards let the work spread over independent tasks. Heavy packages
(sentence-transformers, openai, google-genai) are imported only by the provider that needs
them, and only when something is not cached.

Example:
    >>> from components.embedding import EmbeddingConfig, embed_texts
    >>> X = embed_texts(["hello"], EmbeddingConfig(), kind="query")  # doctest: +SKIP
"""

from .config import EmbeddingConfig
from .errors import EmbeddingError
from .extract import (
    Shard,
    ShardReport,
    collect_embeddings,
    embed_dataset,
    embed_shard,
    embed_texts,
    plan_shards,
)
from .store import EmbeddingArtifacts, EmbeddingStoreError, load_embeddings, save_embeddings

__all__ = [
    "EmbeddingArtifacts",
    "EmbeddingConfig",
    "EmbeddingError",
    "EmbeddingStoreError",
    "Shard",
    "ShardReport",
    "collect_embeddings",
    "embed_dataset",
    "embed_shard",
    "embed_texts",
    "load_embeddings",
    "plan_shards",
    "save_embeddings",
]
