"""Thresholds of the data-validation stage: the ``validation:`` section of params.yaml.

:class:`ValidationConfig` is frozen and checked at construction, so a bad threshold fails when
the params are loaded (:func:`components.params.load_params`), with a message saying which key
to change, not halfway through a run.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ValidationConfig(BaseModel):
    """Thresholds of the dataset and embedding expectation suites.

    Attributes:
        corpus_text_min_chars: shortest allowed document ``text`` (characters).
        corpus_text_max_chars: longest allowed document ``text`` (characters).
        title_max_chars: longest allowed document ``title``.
        allow_empty_titles: whether a document may have an empty or missing title.
        query_text_min_chars: shortest allowed query text.
        query_text_max_chars: longest allowed query text.
        text_length_mostly: fraction of rows that must satisfy the length bounds (GX
            ``mostly``); 1.0 means every row.
        min_score: smallest allowed relevance score (the scores are integers).
        max_score: largest allowed relevance score; ``None`` means no upper bound.
        positive_min_score: a label is positive when its score is at least this.
        require_positive_per_query: every labelled query needs at least one positive label.
        min_qrels_rows: fewest labels a qrels split must hold.
        embedding_dtypes: allowed dtypes of the embedding matrices.
        embeddings_normalized: default for whether embeddings must be L2-normalised.
        embedding_norm_tolerance: with normalised embeddings, ``|norm - 1| <= tolerance``.
        embedding_min_norm: without normalisation, every row norm must be at least this
            (a zero vector has no direction, so cosine similarity is undefined).
        sample_rows: offending rows shown per failing expectation in the summary.
        build_data_docs: render GX Data Docs HTML into the artifact directory.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    corpus_text_min_chars: int = Field(default=1, ge=0)
    corpus_text_max_chars: int = Field(default=100_000, ge=1)
    title_max_chars: int = Field(default=2_000, ge=0)
    allow_empty_titles: bool = True
    query_text_min_chars: int = Field(default=1, ge=0)
    query_text_max_chars: int = Field(default=5_000, ge=1)
    text_length_mostly: float = Field(default=1.0, gt=0, le=1)
    min_score: int = 0
    max_score: int | None = None
    positive_min_score: int = 1
    require_positive_per_query: bool = True
    min_qrels_rows: int = Field(default=1, ge=0)
    embedding_dtypes: tuple[str, ...] = ("float32",)
    embeddings_normalized: bool = True
    embedding_norm_tolerance: float = Field(default=1e-3, gt=0, lt=1)
    embedding_min_norm: float = Field(default=1e-6, ge=0)
    sample_rows: int = Field(default=5, ge=1, le=100)
    build_data_docs: bool = True

    @model_validator(mode="after")
    def _check_bounds(self) -> ValidationConfig:
        for table in ("corpus", "query"):
            low = getattr(self, f"{table}_text_min_chars")
            high = getattr(self, f"{table}_text_max_chars")
            if low > high:
                raise ValueError(
                    f"{table}_text_min_chars ({low}) is larger than {table}_text_max_chars "
                    f"({high}): lower the minimum or raise the maximum"
                )
        if self.max_score is not None and self.max_score < self.min_score:
            raise ValueError(
                f"max_score ({self.max_score}) is below min_score "
                f"({self.min_score}): set max_score >= min_score or null"
            )
        if self.require_positive_per_query and self.positive_min_score < self.min_score:
            raise ValueError(
                f"positive_min_score ({self.positive_min_score}) is below min_score "
                f"({self.min_score}); a positive label must be a valid score"
            )
        if (
            self.require_positive_per_query
            and self.max_score is not None
            and self.positive_min_score > self.max_score
        ):
            raise ValueError(
                f"positive_min_score ({self.positive_min_score}) is above max_score "
                f"({self.max_score}): no label could ever be positive"
            )
        if not self.embedding_dtypes:
            raise ValueError("embedding_dtypes is empty: list at least one dtype, e.g. [float32]")
        import numpy as np

        for name in self.embedding_dtypes:
            try:
                kind = np.dtype(name).kind
            except TypeError:
                raise ValueError(
                    f"embedding_dtypes: {name!r} is not a numpy dtype; use e.g. float32 or float16"
                ) from None
            if kind != "f":
                raise ValueError(f"embedding_dtypes: {name!r} is not a floating-point dtype")
        return self
