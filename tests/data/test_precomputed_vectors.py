"""``embedding.provider: precomputed``: vectors shipped in ``<dataset>/embeddings/``.

Good files (Parquet with list or fixed-size-list vectors, other column names, ``.npy`` with
``.txt`` or ``.json`` ids, rows in any order) give exactly the matrices an extraction would
write, in dataset order. Bad ones stop ``matryoshka embed`` with exit 1 and one message
naming file, row and field, and leave no ``runs/embeddings``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.stages import (
    FAST,
    REPO,
    assert_cli_failure,
    copy_dataset,
    synthetic_embeddings,
)
from helpers.vectors import export_npy, export_parquet, write_parquet

from components import cli
from components.data import DataFormatError
from components.embedding import EmbeddingArtifacts, load_embeddings
from components.embedding.config import PrecomputedConfig
from components.embedding.precomputed import file_digest, find_vector_files, read_vectors

DECLARED = ["--set", "embedding.precomputed.normalized=true"]


@pytest.fixture
def reference(tmp_path: Path) -> EmbeddingArtifacts:
    """Unit-norm 16-d vectors of the tiny dataset, as the embed stage writes them."""
    return synthetic_embeddings(tmp_path / "reference")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return copy_dataset(tmp_path / "tiny")


def run_embed(
    runs: Path, dataset: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    """``matryoshka embed --provider precomputed`` (in process): exit code and stderr."""
    argv = ["embed", "--params", str(REPO / "params.yaml"), "--runs-dir", str(runs)]
    for key, value in FAST.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    argv += ["--dataset", str(dataset), "--provider", "precomputed", *extra]
    code = cli.main(argv)
    return code, capsys.readouterr().err


def assert_same(written: Path, reference: EmbeddingArtifacts) -> None:
    out = load_embeddings(written)
    assert out.corpus_ids == reference.corpus_ids and out.query_ids == reference.query_ids
    np.testing.assert_array_equal(out.corpus, reference.corpus)
    np.testing.assert_array_equal(out.queries, reference.queries)


@pytest.mark.parametrize("fixed_size", [False, True])
def test_parquet_in_any_order_gives_the_dataset_order(
    fixed_size: bool,
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = export_parquet(reference, dataset, shuffle_seed=3, fixed_size=fixed_size)
    runs = tmp_path / "runs"
    code, err = run_embed(runs, dataset, capsys, *DECLARED)
    assert code == 0, err
    assert_same(runs / "embeddings", reference)
    meta = json.loads((runs / "embeddings" / "meta.json").read_text())
    assert meta["provider"] == "precomputed" and meta["normalized_by"] == "source"
    assert meta["dataset_fingerprint"] == reference.meta["dataset_fingerprint"]
    assert meta["sources"] == {
        f"embeddings/{table}.parquet": file_digest(path) for table, path in files.items()
    }
    # The GX embeddings suite ran on them (its artifacts sit in the output, as for extraction).
    assert (runs / "embeddings" / "validation" / "summary.txt").is_file()


@pytest.mark.parametrize("ids_format, dtype", [("txt", "float32"), ("json", "float64")])
def test_npy_with_ids(
    ids_format: str,
    dtype: str,
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = export_npy(reference, dataset, ids_format=ids_format, shuffle_seed=5)
    for path in files.values():  # float64 files are read as float32 (exact for these values)
        np.save(path, np.load(path).astype(dtype))
    runs = tmp_path / "runs"
    code, err = run_embed(runs, dataset, capsys, *DECLARED)
    assert code == 0, err
    assert_same(runs / "embeddings", reference)


def test_columns_are_found_by_type_or_configured(
    reference: EmbeddingArtifacts, dataset: Path, tmp_path: Path
) -> None:
    path = dataset / "embeddings" / "corpus.parquet"
    write_parquet(
        path, reference.corpus_ids, reference.corpus, id_column="doc_id", vector_column="emb"
    )
    files = find_vector_files(dataset, "corpus")
    assert files is not None
    read = read_vectors(files, PrecomputedConfig(), None)  # the only string / list columns
    assert read.ids == reference.corpus_ids
    np.testing.assert_array_equal(read.matrix, reference.corpus)

    table = pq.read_table(path).append_column("emb2", pq.read_table(path).column("emb"))
    pq.write_table(table, path)
    with pytest.raises(DataFormatError, match=r"2 list columns \(emb, emb2\); set "):
        read_vectors(files, PrecomputedConfig(), None)
    chosen = read_vectors(files, PrecomputedConfig(vector_column="emb2"), None)
    np.testing.assert_array_equal(chosen.matrix, reference.corpus)
    with pytest.raises(DataFormatError, match="no column 'vec' \\(embedding.precomputed"):
        read_vectors(files, PrecomputedConfig(vector_column="vec"), None)


def test_small_batches_read_the_same(reference: EmbeddingArtifacts, dataset: Path) -> None:
    path = dataset / "embeddings" / "corpus.parquet"
    write_parquet(path, reference.corpus_ids, reference.corpus, row_group_size=7)
    files = find_vector_files(dataset, "corpus")
    assert files is not None
    read = read_vectors(files, PrecomputedConfig(batch_rows=3), None)
    np.testing.assert_array_equal(read.matrix, reference.corpus)


def test_normalize_decides_for_undeclared_vectors(
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scaled = EmbeddingArtifacts(
        reference.out_dir,
        reference.corpus_ids,
        reference.corpus * 3.0,
        reference.query_ids,
        reference.queries * 0.5,
        reference.meta,
    )
    export_parquet(scaled, dataset)
    code, err = run_embed(tmp_path / "normalised", dataset, capsys)  # normalize: true
    assert code == 0, err
    out = load_embeddings(tmp_path / "normalised" / "embeddings")
    np.testing.assert_allclose(out.corpus, reference.corpus, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out.queries, axis=1), 1.0, atol=1e-6)
    assert out.meta["normalized_by"] == "pipeline"
    code, err = run_embed(tmp_path / "raw", dataset, capsys, "--no-normalize")
    assert code == 0, err
    raw = load_embeddings(tmp_path / "raw" / "embeddings")
    np.testing.assert_array_equal(raw.corpus, scaled.corpus)
    assert raw.meta["normalize"] is False and raw.meta["normalized_by"] is None
    # Declared unit norms that are not: refused, nothing written.
    runs = tmp_path / "declared"
    code, err = run_embed(runs, dataset, capsys, *DECLARED)
    assert_cli_failure(
        code, err, 1, "embeddings/corpus.parquet, row ", "field 'norm': 3", "L2-normalised"
    )
    assert not (runs / "embeddings").exists()


# --- bad files: each refused naming file, row and field ------------------------------------
def _corrupt(case: str, reference: EmbeddingArtifacts, dataset: Path) -> None:
    ids = list(reference.corpus_ids)
    vectors = [list(v) for v in reference.corpus]
    value_type = None
    if case == "dimension":
        vectors[16] = vectors[16][:-1]
    elif case == "nan":
        vectors[4][2] = float("nan")
    elif case == "missing_id":
        del ids[5], vectors[5]
    elif case == "extra_id":
        ids.append("stranger")
        vectors.append(vectors[0])
    elif case == "duplicate_id":
        ids[7] = ids[6]
    elif case == "not_normalised":
        vectors[9] = [2 * x for x in vectors[9]]
    elif case == "non_numeric":
        vectors = [[str(x) for x in v] for v in vectors]
        value_type = pa.string()
    export_parquet(reference, dataset, shuffle_seed=None)
    write_parquet(dataset / "embeddings" / "corpus.parquet", ids, vectors, value_type=value_type)


BAD_CASES = {
    "dimension": ("row 17, field 'vector': 15 values, expected 16 (id 'd16')",),
    "nan": ("row 5, field 'vector': nan at dim 2", "[id='d4']"),
    "missing_id": (
        "tiny/corpus.jsonl, row 6, field 'id': 'd5'",
        "has a vector in",
    ),
    "extra_id": ("row 41, field 'id': 'stranger'", "every id is in", "corpus.jsonl"),
    "duplicate_id": ("row 8, field 'id': 'd6'", "ids are unique"),
    "not_normalised": ("row 10, field 'norm': 2", "[id='d9']"),
    "non_numeric": ("row 1, field 'vector': expected a list of numbers per row, got list",),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_vector_files_are_refused(
    case: str,
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _corrupt(case, reference, dataset)
    runs = tmp_path / "runs"
    (runs / "embeddings").mkdir(parents=True)
    (runs / "embeddings" / "meta.json").write_text("{}")  # a stale, earlier output
    code, err = run_embed(runs, dataset, capsys, *DECLARED)
    where = f"{dataset}/embeddings/corpus.parquet"
    fragments = BAD_CASES[case]
    if case != "missing_id":  # that one names the dataset's row (and the vector file)
        fragments = tuple(f"{where}, {f}" if f.startswith("row ") else f for f in fragments)
    assert_cli_failure(code, err, 1, *fragments)
    assert not (runs / "embeddings").exists()


def test_missing_files_are_named(
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = tmp_path / "runs"
    code, err = run_embed(runs, dataset, capsys)
    assert_cli_failure(
        code, err, 1, f"{dataset}/embeddings", "no corpus vectors: expected corpus.parquet"
    )
    export_npy(reference, dataset)
    (dataset / "embeddings" / "queries_ids.txt").unlink()
    code, err = run_embed(runs, dataset, capsys)
    assert_cli_failure(code, err, 1, "queries.npy: no ids for these vectors")
    (dataset / "embeddings" / "queries_ids.txt").write_text("q0\n\nq1\n")
    code, err = run_embed(runs, dataset, capsys)
    assert_cli_failure(code, err, 1, "queries_ids.txt, row 2, field 'id': empty line")
    (dataset / "embeddings" / "queries_ids.txt").write_text("q0\nq1\n")
    code, err = run_embed(runs, dataset, capsys)
    assert_cli_failure(code, err, 1, "queries_ids.txt: 2 ids but queries.npy has 16 rows")
    export_parquet(reference, dataset)  # both formats for one table
    code, err = run_embed(runs, dataset, capsys)
    assert_cli_failure(code, err, 1, "both corpus.parquet and corpus.npy exist")
    assert not (runs / "embeddings").exists()


def test_dimensions_setting_is_enforced(
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export_parquet(reference, dataset)
    code, err = run_embed(tmp_path / "runs", dataset, capsys, "--set", "embedding.dimensions=32")
    assert_cli_failure(code, err, 1, "row 1, field 'vector': 16 values, expected 32")


def test_an_empty_vector_file_is_refused(
    reference: EmbeddingArtifacts,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export_parquet(reference, dataset)
    path = dataset / "embeddings" / "corpus.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    code, err = run_embed(tmp_path / "runs", dataset, capsys)
    assert_cli_failure(code, err, 1, f"{path}: no vectors (the file has no rows)")
