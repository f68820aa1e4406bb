"""Embedding extraction: texts -> cached, resumable, fault-tolerant base embeddings.

Providers (``local`` sentence-transformers, ``openai``-compatible APIs, ``google`` Gemini /
Vertex) sit behind one interface; a content-addressed cache makes re-runs free and resumes
after crashes; shards let the work spread over independent tasks. Heavy packages
(sentence-transformers, openai, google-genai) are imported only by the provider that needs
them, and only when something is not cached. ``precomputed`` runs no model: the embed stage
reads vectors shipped in ``<dataset>/embeddings/`` (:mod:`.precomputed`).

Example:
    >>> from components.embedding import EmbeddingConfig, embed_texts
    >>> X = embed_texts(["hello"], EmbeddingConfig(), kind="query")  # doctest: +SKIP
"""

from components.lazy import lazy_exports

# Names are imported on first use (components/lazy.py): importing one module of the
# package does not load the others.
_EXPORTS = {
    "EmbeddingArtifacts": "store",
    "EmbeddingConfig": "config",
    "EmbeddingError": "errors",
    "EmbeddingStoreError": "store",
    "Shard": "extract",
    "ShardReport": "extract",
    "collect_embeddings": "extract",
    "embed_dataset": "extract",
    "embed_shard": "extract",
    "embed_texts": "extract",
    "load_embeddings": "store",
    "plan_shards": "extract",
    "save_embeddings": "store",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
