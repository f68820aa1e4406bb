"""Training-free baselines every evaluation reports next to the adaptor.

* :class:`Truncation`: the base embeddings cut to m (what a user gets today);
* :class:`PCAProjection`: PCA fitted on the corpus (mean-centred), top-m components;
* :class:`SVDRotation`: the orthogonal rotation from the uncentred corpus SVD, cut to m. It
  keeps full-d cosine exactly and is the adaptor's starting point in the default setup.

Each exposes ``embed(x, dim) -> [n, dim]`` L2-normalised, like
:meth:`components.adaptor.MatryoshkaAdaptor.embed`, so evaluation treats all methods alike.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch.nn import functional as F

from components.adaptor import check_embeddings, fit_rotation


class Embedder(Protocol):
    """Anything that maps base embeddings to re-normalised m-dim vectors."""

    def embed(self, x: torch.Tensor | np.ndarray, dim: int | None = None) -> torch.Tensor: ...


class _LinearMap:
    """``normalize(((x − shift)·W)[:, :m])`` for a fixed shift and d×d matrix W."""

    def __init__(self, matrix: torch.Tensor, shift: torch.Tensor | None = None) -> None:
        self.matrix = matrix
        self.shift = shift
        self.dim = matrix.shape[0]

    def embed(self, x: torch.Tensor | np.ndarray, dim: int | None = None) -> torch.Tensor:
        m = dim or self.dim
        if not 0 < m <= self.dim:
            raise ValueError(f"dim must be in [1, {self.dim}], got {m}")
        x = check_embeddings(x, "embeddings", self.dim)
        if self.shift is not None:
            x = x - self.shift
        return F.normalize(x @ self.matrix[:, :m], dim=-1)


class Truncation(_LinearMap):
    """The base embeddings' first m coordinates."""

    def __init__(self, dim: int) -> None:
        super().__init__(torch.eye(dim))


class PCAProjection(_LinearMap):
    """Mean-centred PCA fitted on the corpus; queries are centred with the corpus mean."""

    @classmethod
    def fit(cls, corpus: torch.Tensor | np.ndarray) -> PCAProjection:
        x = check_embeddings(corpus, "corpus").to(torch.float64)
        mean = x.mean(dim=0)
        centred = x - mean
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred)
        components = eigenvectors[:, torch.argsort(eigenvalues, descending=True)]
        return cls(components.to(torch.float32), mean.to(torch.float32))


class SVDRotation(_LinearMap):
    """The uncentred SVD rotation (:func:`components.adaptor.fit_rotation`)."""

    @classmethod
    def fit(cls, corpus: torch.Tensor | np.ndarray) -> SVDRotation:
        return cls(fit_rotation(corpus))
