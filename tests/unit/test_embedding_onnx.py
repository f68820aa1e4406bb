"""The local provider on ONNX Runtime (``embedding.backend: onnx | onnx-int8``): the same
vectors as torch within a stated tolerance, an export made once, and a cache namespace of
its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from components.embedding import EmbeddingConfig, embed_texts
from components.embedding.errors import ProviderSetupError
from components.embedding.extract import open_cache
from components.embedding.onnx_backend import ensure_export, export_dir, read_pipeline
from components.embedding.providers import bundled_model_path, provider_identity

pytestmark = pytest.mark.slow

LONG = " ".join(f"word{i} protein folding" for i in range(200))  # past max_seq_length (256)
TEXTS = [
    "The cat sat on the mat.",
    "  Protein folding in yeast cells.  ",
    "",
    "Quantum entanglement of photons over long distances.",
    LONG,
    "Vitamin D supplementation and the risk of fractures in older adults.",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory per module, so the export is made once for all tests here."""
    return tmp_path_factory.mktemp("onnx-cache")


def vectors(backend: str, cache: Path, **settings: object) -> np.ndarray:
    config = EmbeddingConfig(cache_dir=cache, backend=backend, progress="off", **settings)
    return embed_texts(TEXTS, config, kind="document")


def test_onnx_equals_torch_within_float32_rounding(cache: Path) -> None:
    # Same fp32 arithmetic with fused kernels summing in another order: differences are
    # rounding, ~2e-7 on unit vectors here (1e-5 leaves room for other CPUs' kernels). The
    # long text checks that truncation to max_seq_length matches too.
    torch_vectors = vectors("torch", cache)
    onnx_vectors = vectors("onnx", cache)
    assert onnx_vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-5)


def test_onnx_int8_stays_close_to_torch(cache: Path) -> None:
    # Int8 weights change each vector a little: on 640 SciFact abstracts the cosine to the
    # fp32 vector was 0.991 at worst, here 0.991-0.995 for texts and 0.975 for the empty one
    # (two special tokens, nothing to average over); 0.97 bounds it per text. Its retrieval
    # quality is measured in benchmarks/embedding_backends.py (docs/embedding.md).
    torch_vectors = vectors("torch", cache)
    int8_vectors = vectors("onnx-int8", cache)
    cosines = (torch_vectors * int8_vectors).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    assert not np.allclose(int8_vectors, torch_vectors, atol=1e-5)  # really another model


def test_backends_have_their_own_cache_namespaces(cache: Path) -> None:
    configs = {
        backend: EmbeddingConfig(cache_dir=cache, backend=backend, progress="off")
        for backend in ("torch", "onnx", "onnx-int8")
    }
    dirs = {backend: open_cache(config, "document").dir for backend, config in configs.items()}
    assert len(set(dirs.values())) == 3
    assert provider_identity(configs["onnx-int8"]).model.endswith("/onnx-int8.e1")
    # The torch namespace is the one earlier versions wrote (no backend in its id).
    assert "onnx" not in provider_identity(configs["torch"]).model
    # Vectors embedded by one backend are not served to another: each cache holds its own.
    embed_texts(TEXTS[:2], configs["onnx"], kind="document")
    assert len(open_cache(configs["onnx"], "document")) >= 2
    fresh = cache / "fresh"
    embed_texts(TEXTS[:2], configs["torch"].model_copy(update={"cache_dir": fresh}))
    onnx_fresh = configs["onnx"].model_copy(update={"cache_dir": fresh})
    assert len(open_cache(onnx_fresh, "document")) == 0


def test_the_export_is_made_once_and_reused(cache: Path) -> None:
    identity = provider_identity(EmbeddingConfig(cache_dir=cache, backend="onnx"))
    assert identity.model_path is not None and identity.model_files_id is not None
    first = ensure_export(identity.model_path, cache, identity.model_files_id, "onnx")
    stamp = first.stat().st_mtime_ns
    again = ensure_export(identity.model_path, cache, identity.model_files_id, "onnx")
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.parent == export_dir(cache, identity.model_files_id, "onnx")
    assert not list(first.parent.glob(".tmp-*"))  # no temporary file left behind


def test_a_model_with_modules_onnx_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    modules = json.loads((bundled_model_path() / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ProviderSetupError, match=r"Dense.*use backend: torch"):
        read_pipeline(tmp_path)
    pipeline = read_pipeline(bundled_model_path())
    assert (pipeline.pooling, pipeline.normalize) == ("mean", True)


def test_onnx_on_a_gpu_device_is_refused() -> None:
    with pytest.raises(ValidationError, match="runs on the CPU .*use backend: torch on a GPU"):
        EmbeddingConfig(backend="onnx", device="cuda")
