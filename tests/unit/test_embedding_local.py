"""The ``local`` provider with the bundled all-MiniLM-L6-v2 (offline; loads in a few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers.helpers import write_beir_dataset

from components.data import load_dataset
from components.embedding import EmbeddingConfig, embed_dataset, embed_texts, load_embeddings
from components.embedding.extract import open_cache
from components.embedding.local import load_sentence_transformer
from components.embedding.providers import bundled_model_path, provider_identity

pytestmark = pytest.mark.slow

TEXTS = [
    "The cat sat on the mat.",
    "Protein folding in yeast cells.",
    "",
    "Quantum entanglement of photons over long distances.",
    "The cat sat on the mat.",
]


@pytest.fixture(scope="module")
def model() -> object:
    return load_sentence_transformer(bundled_model_path(), "auto", 256)


def test_matches_bare_sentence_transformers_and_is_cached(model: object, tmp_path: Path) -> None:
    config = EmbeddingConfig(cache_dir=tmp_path, progress="off")
    matrix = embed_texts(TEXTS, config, kind="document")
    bare = model.encode(TEXTS, normalize_embeddings=True)  # type: ignore[attr-defined]
    assert matrix.shape == (5, 384) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, bare, atol=1e-5)
    # MiniLM has no prompts: queries share the documents' cache namespace and vectors.
    identity = provider_identity(config)
    assert identity.task("query") is None and identity.model.startswith("all-MiniLM-L6-v2@")
    assert open_cache(config, "query").dir == open_cache(config, "document").dir
    np.testing.assert_array_equal(embed_texts(TEXTS, config, kind="query"), matrix)
    assert len(open_cache(config, "document")) == 4  # duplicates embedded once


def test_dimensions_truncate_and_split_long_texts(model: object, tmp_path: Path) -> None:
    short = embed_texts(
        TEXTS[:2], EmbeddingConfig(cache_dir=tmp_path, dimensions=64, progress="off")
    )
    assert short.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, rtol=1e-5)
    long_text = " ".join(f"token{i}" for i in range(60))
    config = EmbeddingConfig(
        cache_dir=tmp_path, max_input_tokens=32, overlong="split", progress="off"
    )
    split = embed_texts([long_text], config)
    from components.embedding.local import LocalTokenizer

    tokenizer = LocalTokenizer(bundled_model_path(), 32)
    spans = tokenizer.spans(long_text, tokenizer.budget)
    assert len(spans) > 1
    pieces = [long_text[a:b] for a, b in spans]
    vectors = model.encode(pieces, normalize_embeddings=True)  # type: ignore[attr-defined]
    weights = np.array([len(p) for p in pieces], dtype=np.float32)
    mean = (weights[:, None] * vectors).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(split[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_embed_dataset_writes_artifacts(tmp_path: Path) -> None:
    dataset = load_dataset(write_beir_dataset(tmp_path / "data", 12, 3))
    config = EmbeddingConfig(cache_dir=tmp_path / "cache", progress="off")
    artifacts = embed_dataset(dataset, config, tmp_path / "out")
    loaded = load_embeddings(tmp_path / "out")
    assert loaded.corpus.shape == (12, 384) and loaded.queries.shape == (3, 384)
    np.testing.assert_array_equal(loaded.corpus, artifacts.corpus)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["provider"] == "local" and meta["model"] == "all-MiniLM-L6-v2"
    assert meta["task_types"] == {"document": None, "query": None}


def test_fully_cached_run_loads_no_model(tmp_path: Path) -> None:
    config = EmbeddingConfig(cache_dir=tmp_path, progress="off")
    embed_texts(TEXTS[:2], config)
    code = (
        "import sys\n"
        "from components.embedding import EmbeddingConfig, embed_texts\n"
        f"embed_texts({TEXTS[:2]!r}, EmbeddingConfig(cache_dir={str(tmp_path)!r}))\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'openai') "
        "if m in sys.modules))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
