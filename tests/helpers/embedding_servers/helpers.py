"""Shared helpers for the embedding tests: fast configs, tiny datasets, secret scans."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from components.embedding.config import EmbeddingConfig

from .base import EmbeddingTestServer

DIM = 16


def fast_config(
    server: EmbeddingTestServer, cache_dir: Path, provider: str = "openai", **overrides: Any
) -> EmbeddingConfig:
    """A config with short timeouts and backoffs so fault tests take milliseconds."""
    values: dict[str, Any] = dict(
        provider=provider,
        model="test-embedding" if provider == "openai" else "gemini-embedding-001",
        base_url=getattr(server, "base_url", server.root_url),
        dimensions=DIM,
        batch_size=8,
        max_concurrency=4,
        max_retries=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        timeout_s=0.5,
        cache_dir=cache_dir,
        progress="off",
        api_key_env="TEST_EMBEDDING_API_KEY",
    )
    values.update(overrides)
    return EmbeddingConfig(**values)


def write_beir_dataset(root: Path, n_docs: int, n_queries: int, extra: int = 0) -> Path:
    """A small BEIR-layout dataset (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as handle:
        for i in range(n_docs + extra):
            handle.write(
                json.dumps(
                    {
                        "_id": f"d{i}",
                        "title": f"Title {i}",
                        "text": f"document number {i} about topic {i % 7}",
                    }
                )
                + "\n"
            )
    with gzip.open(root / "queries.jsonl.gz", "wt") as handle:
        for i in range(n_queries):
            handle.write(json.dumps({"_id": f"q{i}", "text": f"question {i}?"}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(n_queries)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (also hidden/temp files)."""
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]
