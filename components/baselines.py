"""Training-free baselines every evaluation reports next to the adaptor, and their registry.

* :class:`Truncation` (``base``): the base embeddings cut to m (what a user gets today);
* :class:`PCAProjection` (``pca``): PCA fitted on the corpus (mean-centred), top-m components;
* :class:`SVDRotation` (``svd_rotation``): the orthogonal rotation from the uncentred corpus
  SVD, cut to m. It keeps full-d cosine exactly and is the adaptor's starting point in the
  default setup;
* :class:`PCALayerNorm` (``pca_layernorm``): centred PCA, top-m components, then a
  parameter-free LayerNorm over those m coordinates;
* :class:`Whitening` (``whitening``): PCA whitening (BERT-whitening, Su et al. 2021), top-m
  whitened components.

Each exposes ``embed(x, dim) -> [n, dim]`` L2-normalised, like
:meth:`components.adaptor.MatryoshkaAdaptor.embed`, so evaluation treats all methods alike.

:data:`BASELINES` is the one list of them: the evaluate stage, the registry gate, the review
report and the benchmarks all take their names, order, labels and fitters from it (and the
DVC plot and params.yaml are checked against it by the tests). Importing this module loads
neither torch nor numpy (they are imported when a baseline is fitted or used), so that light
code such as ``matryoshka results`` can read the names.

Example:
    >>> import torch
    >>> corpus = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1)
    >>> fitted = fit_baselines(corpus, ["pca", "whitening"])
    >>> {name: tuple(method.embed(corpus, 4).shape) for name, method in fitted.items()}
    {'pca': (50, 4), 'whitening': (50, 4)}
    >>> fit_baselines(corpus, ["pcaa"])
    Traceback (most recent call last):
    ...
    ValueError: unknown baseline(s) ['pcaa']; choose from ['base', 'pca', 'svd_rotation', 'pca_layernorm', 'whitening']
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

#: LayerNorm's ε (PyTorch's default), added to the variance over the m kept coordinates.
LAYERNORM_EPS = 1e-5
#: Whitening divides component i by ``sqrt(λᵢ) + WHITENING_EPS·sqrt(λ₁)``: a guard against
#: (near-)zero eigenvalues that does not depend on the embeddings' scale.
WHITENING_EPS = 1e-6


class Embedder(Protocol):
    """Anything that maps base embeddings to re-normalised m-dim vectors."""

    def embed(self, x: torch.Tensor | np.ndarray, dim: int | None = None) -> torch.Tensor: ...


class _LinearMap:
    """``normalize(((x − shift)·W)[:, :m])`` for a fixed shift and d×d matrix W."""

    def __init__(self, matrix: torch.Tensor, shift: torch.Tensor | None = None) -> None:
        self.matrix = matrix
        self.shift = shift
        self.dim = matrix.shape[0]

    def _check_dim(self, dim: int | None) -> int:
        m = dim or self.dim
        if not 0 < m <= self.dim:
            raise ValueError(f"dim must be in [1, {self.dim}], got {m}")
        return m

    def coordinates(self, x: torch.Tensor | np.ndarray, dim: int | None = None) -> torch.Tensor:
        """The m coordinates before the final L2 normalisation, ``((x − shift)·W)[:, :m]``."""
        from components.adaptor import check_embeddings

        m = self._check_dim(dim)
        x = check_embeddings(x, "embeddings", self.dim)
        if self.shift is not None:
            x = x - self.shift
        return x @ self.matrix[:, :m]

    def embed(self, x: torch.Tensor | np.ndarray, dim: int | None = None) -> torch.Tensor:
        """``coordinates(x, dim)`` L2-normalised: ``[n, dim]`` unit vectors."""
        from torch.nn import functional as F

        return F.normalize(self.coordinates(x, dim), dim=-1)


class Truncation(_LinearMap):
    """The base embeddings' first m coordinates."""

    def __init__(self, dim: int) -> None:
        import torch

        super().__init__(torch.eye(dim))

    @classmethod
    def fit(cls, corpus: torch.Tensor | np.ndarray) -> Truncation:
        """Nothing to fit: the identity of the corpus' dimension d."""
        from components.adaptor import check_embeddings

        return cls(int(check_embeddings(corpus, "corpus").shape[1]))


def _centred_eigh(corpus: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, ...]:
    """Corpus mean, covariance eigenvalues (descending, 1/n) and their eigenvectors, float64."""
    import torch

    from components.adaptor import check_embeddings

    x = check_embeddings(corpus, "corpus").to(torch.float64)
    mean = x.mean(dim=0)
    centred = x - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / x.shape[0])
    order = torch.argsort(eigenvalues, descending=True)
    return mean, eigenvalues[order].clamp_min(0.0), eigenvectors[:, order]


class PCAProjection(_LinearMap):
    """Mean-centred PCA fitted on the corpus; queries are centred with the corpus mean."""

    @classmethod
    def fit(cls, corpus: torch.Tensor | np.ndarray) -> PCAProjection:
        import torch

        mean, _, components = _centred_eigh(corpus)
        return cls(components.to(torch.float32), mean.to(torch.float32))


class PCALayerNorm(PCAProjection):
    """Centred PCA, top m components, then a parameter-free LayerNorm over those m coordinates.

    ``embed(x, m) = normalize(LN((x − μ)·V[:, :m]))`` where μ is the corpus mean, V the
    corpus covariance eigenvectors (descending eigenvalues, as :class:`PCAProjection`) and
    ``LN(z) = (z − mean(z)) / sqrt(var(z) + ε)`` over the m coordinates of each row (Layer
    Normalization, Ba, Kiros & Hinton 2016, arXiv 1607.06450, without gain or bias: nothing
    is fitted beyond the PCA). Queries use the corpus μ and V, like documents.

    Why after the truncation: the m-dim vector is what is stored and searched, so the
    normalisation must use those m coordinates only; a LayerNorm over all d coordinates
    before truncating would mix discarded coordinates into every prefix. Hence
    ``embed(x, m)`` is not a prefix of ``embed(x, d)`` (unlike the linear baselines): it is
    the method applied to the m kept components. The row-mean subtraction is what changes
    rankings (it removes each vector's component along the all-ones direction of the m PCA
    coordinates); dividing by the row std does not change the direction and so is invisible
    after the final L2 normalisation, kept for fidelity to LayerNorm.

    m = 1 is refused: a LayerNorm over one coordinate is 0 for every vector.

    Example:
        >>> import torch
        >>> corpus = torch.nn.functional.normalize(torch.randn(40, 6), dim=-1)
        >>> z = PCALayerNorm.fit(corpus).coordinates(corpus, 3)
        >>> bool(z.mean(dim=1).abs().max() < 1e-5), tuple(z.shape)
        (True, (40, 3))
    """

    def coordinates(self, x: torch.Tensor | np.ndarray, dim: int | None = None) -> torch.Tensor:
        """``LN((x − μ)·V[:, :m])``: zero mean and (almost) unit variance per row."""
        from torch.nn import functional as F

        m = self._check_dim(dim)
        if m < 2:
            raise ValueError(
                "pca_layernorm: dim must be at least 2 (a LayerNorm over 1 coordinate is 0 "
                f"for every vector), got {m}"
            )
        return F.layer_norm(super().coordinates(x, m), (m,), eps=LAYERNORM_EPS)


class Whitening(_LinearMap):
    """PCA whitening fitted on the corpus (BERT-whitening), top m whitened components.

    ``embed(x, m) = normalize(((x − μ)·V·Λ^{-1/2})[:, :m])`` with μ the corpus mean and
    ``Σ = (X − μ)ᵀ(X − μ)/n = V Λ Vᵀ`` (eigenvalues descending): "Whitening Sentence
    Representations for Better Semantics and Faster Retrieval", Su, Cao, Liu & Ou 2021
    (arXiv 2103.15316), whose reduced variant keeps the first k columns of ``V·Λ^{-1/2}``,
    which is exactly a prefix of m. The whitened corpus has identity covariance in every
    prefix; each component is divided by ``sqrt(λᵢ) + ε·sqrt(λ₁)`` (ε =
    :data:`WHITENING_EPS`) so that zero-variance directions (n < d) do not divide by zero
    (they are then amplified by 1/ε: whitening is only meaningful for m up to the corpus'
    rank).

    Example:
        >>> import torch
        >>> corpus = torch.randn(500, 4) * torch.tensor([4.0, 2.0, 1.0, 0.5])
        >>> z = Whitening.fit(corpus).coordinates(corpus, 4).double()
        >>> z = z - z.mean(dim=0)
        >>> bool(torch.allclose(z.T @ z / 500, torch.eye(4, dtype=torch.float64), atol=1e-4))
        True
    """

    @classmethod
    def fit(cls, corpus: torch.Tensor | np.ndarray) -> Whitening:
        import torch

        mean, eigenvalues, components = _centred_eigh(corpus)
        scale = eigenvalues.sqrt()
        matrix = components / (scale + WHITENING_EPS * scale[0])
        return cls(matrix.to(torch.float32), mean.to(torch.float32))


class SVDRotation(_LinearMap):
    """The uncentred SVD rotation (:func:`components.adaptor.fit_rotation`)."""

    @classmethod
    def fit(cls, corpus: torch.Tensor | np.ndarray) -> SVDRotation:
        from components.adaptor import fit_rotation

        return cls(fit_rotation(corpus))


@dataclass(frozen=True)
class Baseline:
    """One registered training-free baseline.

    Attributes:
        fit: corpus embeddings ``[n, d]`` → a fitted :class:`Embedder`.
        label: the method's description in result tables (docs/results.md).
    """

    fit: Callable[[torch.Tensor | np.ndarray], Embedder]
    label: str


#: Every training-free baseline, in the order tables, plots and the gate list them.
BASELINES: Mapping[str, Baseline] = MappingProxyType(
    {
        "base": Baseline(Truncation.fit, "base, truncated"),
        "pca": Baseline(PCAProjection.fit, "PCA (corpus, mean-centred)"),
        "svd_rotation": Baseline(SVDRotation.fit, "SVD rotation (corpus, uncentred)"),
        "pca_layernorm": Baseline(PCALayerNorm.fit, "PCA + LayerNorm (centred, LN over m)"),
        "whitening": Baseline(Whitening.fit, "PCA whitening (BERT-whitening)"),
    }
)
#: Their names, in order.
BASELINE_NAMES: tuple[str, ...] = tuple(BASELINES)


def baseline_names(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """``names`` checked against :data:`BASELINES` (duplicates dropped, order kept); ``None``
    means all of them.

    Raises:
        ValueError: ``unknown baseline(s) [...]; choose from [...]``.

    Example:
        >>> baseline_names(["pca", "base", "pca"])
        ('pca', 'base')
    """
    if names is None:
        return BASELINE_NAMES
    chosen = tuple(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(BASELINE_NAMES)}")
    return chosen


def fit_baselines(
    corpus: torch.Tensor | np.ndarray, names: Sequence[str] | None = None
) -> dict[str, Embedder]:
    """Fit the baselines ``names`` (``None``: all, see :func:`baseline_names`) on ``corpus``.

    Args:
        corpus: the corpus' base embeddings ``[n, d]`` (fit on the corpus that is searched).
        names: which baselines, in the order wanted.

    Returns:
        name → fitted :class:`Embedder`, in the order of ``names``.
    """
    return {name: BASELINES[name].fit(corpus) for name in baseline_names(names)}
