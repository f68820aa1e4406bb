"""The Matryoshka-Adaptor: a residual MLP over frozen embeddings (arXiv 2407.20243).

``x̂ = z + g(z)`` with ``z = x·R``: R is an optional fixed orthogonal rotation fitted on the
corpus (uncentred SVD, so the leading coordinates carry the most energy) and g a shallow MLP
whose output layer starts at zero, so an untrained adaptor is exactly the rotation baseline
(or the identity, the paper's setup, without rotation). Same d in and out: reduction is by
truncation ``x̂[:m]`` only, and one adaptor serves queries and documents.

Saved as a small directory: ``adaptor.json`` (config, d, trained sizes, metadata) and
``adaptor.safetensors`` (weights). Loading needs only torch, numpy and safetensors.

Example:
    >>> import torch
    >>> from components.adaptor import MatryoshkaAdaptor
    >>> from components.config import AdaptorConfig
    >>> adaptor = MatryoshkaAdaptor(dim=8, config=AdaptorConfig(use_rotation=False))
    >>> x = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    >>> bool(torch.equal(adaptor(x), x))  # identity at initialisation
    True
    >>> adaptor.embed(x, dim=4).shape
    torch.Size([4, 4])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from components.atomic import atomic_write_text, staged_directory
from components.config import AdaptorConfig

CONFIG_FILE = "adaptor.json"
WEIGHTS_FILE = "adaptor.safetensors"
FORMAT_VERSION = 1

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def check_embeddings(
    matrix: torch.Tensor | np.ndarray, name: str, dim: int | None = None
) -> torch.Tensor:
    """Return ``matrix`` as a float32 tensor after checking shape and finiteness.

    Raises:
        ValueError: not 2-D, empty, wrong dimension, or containing NaN/inf (the message
            names the matrix, the first bad row and the count).
    """
    tensor = torch.as_tensor(matrix)
    if tensor.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix [n, d], got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name}: empty matrix (0 rows); at least one embedding is needed")
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{name}: dimension mismatch: expected d={dim}, got d={tensor.shape[1]}")
    tensor = tensor.to(torch.float32)
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(
            f"{name}: {bad.numel()} row(s) contain NaN or infinite values "
            f"(first: row {int(bad[0])})"
        )
    return tensor


def fit_rotation(corpus: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Orthogonal d×d matrix V from the uncentred SVD of the corpus, ``X = U S Vᵀ``.

    ``x·V`` sorts coordinates by the corpus' energy along them, so truncating keeps the
    strongest directions while full-d cosine is preserved exactly. Computed from the d×d
    Gram matrix in float64 (cheap for any n); column signs are fixed so that each column's
    largest entry is positive, which makes the result deterministic.
    """
    x = check_embeddings(corpus, "corpus").to(torch.float64)
    gram = x.T @ x
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    order = torch.argsort(eigenvalues, descending=True)
    v = eigenvectors[:, order]
    largest = v.abs().argmax(dim=0)
    signs = torch.sign(v[largest, torch.arange(v.shape[1])])
    signs[signs == 0] = 1.0
    return (v * signs).to(torch.float32)


class MatryoshkaAdaptor(nn.Module):
    """Residual adaptor ``x̂ = z + g(z)``, ``z = x·R``; g's output layer starts at zero.

    Args:
        dim: embedding dimension d (input and output).
        config: hidden width/depth, activation and whether a rotation is used.
        rotation: a d×d orthogonal matrix (see :func:`fit_rotation`); required when
            ``config.use_rotation`` is true, refused otherwise.
    """

    def __init__(
        self, dim: int, config: AdaptorConfig | None = None, rotation: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        config = config or AdaptorConfig()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if config.use_rotation and rotation is None:
            raise ValueError(
                "config.use_rotation is true but no rotation was given: fit one "
                "with fit_rotation(corpus_embeddings)"
            )
        if not config.use_rotation and rotation is not None:
            raise ValueError("a rotation was given but config.use_rotation is false")
        if rotation is not None and tuple(rotation.shape) != (dim, dim):
            raise ValueError(f"rotation must be {dim}x{dim}, got {tuple(rotation.shape)}")
        self.dim = dim
        self.config = config
        self.register_buffer(
            "rotation",
            rotation.to(torch.float32).clone() if rotation is not None else torch.empty(0),
        )
        hidden = config.hidden_dim or dim
        layers: list[nn.Module] = []
        width = dim
        for _ in range(config.num_hidden_layers):
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[config.activation]()]
            width = hidden
        output = nn.Linear(width, dim)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        layers.append(output)
        self.residual = nn.Sequential(*layers)

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """``x·R`` (``x`` itself without rotation)."""
        return x @ self.rotation if self.rotation.numel() else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"dimension mismatch: adaptor expects d={self.dim}, got d={x.shape[-1]}"
            )
        z = self.rotate(x)
        return z + self.residual(z)

    def forward_with_residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapted vectors and g(z), the residual the reconstruction loss (Eq. 3) penalises."""
        return self.adapt_rotated(self.rotate(x))

    def adapt_rotated(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_with_residual` of inputs already rotated (``z = x·R``).

        R is a fixed buffer, never trained, so training rotates its fixed embeddings once
        instead of once per step.
        """
        residual = self.residual(z)
        return z + residual, residual

    @torch.no_grad()
    def embed(
        self, x: torch.Tensor | np.ndarray, dim: int | None = None, batch_size: int = 8192
    ) -> torch.Tensor:
        """Adapt, truncate to ``dim`` (default d) and L2-normalise, in inference mode."""
        m = dim or self.dim
        if not 0 < m <= self.dim:
            raise ValueError(f"dim must be in [1, {self.dim}], got {m}")
        x = check_embeddings(x, "embeddings", self.dim)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = [
            nn.functional.normalize(self(chunk.to(device))[:, :m], dim=-1).cpu()
            for chunk in x.split(batch_size)
        ]
        self.train(was_training)
        return torch.cat(out)


def save_adaptor(
    adaptor: MatryoshkaAdaptor, directory: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``adaptor.json`` + ``adaptor.safetensors`` atomically into ``directory``.

    The directory is assembled under a temporary name and renamed into place, so a crash
    never leaves a directory that looks like a finished adaptor.
    """
    from safetensors.torch import save_file

    target = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in adaptor.state_dict().items()}
    document = {
        "format_version": FORMAT_VERSION,
        "dim": adaptor.dim,
        "config": adaptor.config.model_dump(mode="json"),
        "metadata": metadata or {},
    }
    with staged_directory(target) as staging:
        save_file(state, str(staging / WEIGHTS_FILE))
        atomic_write_text(staging / CONFIG_FILE, json.dumps(document, indent=2, sort_keys=True))
    return target


def load_adaptor(
    directory: str | Path, expected_dim: int | None = None, device: str | torch.device = "cpu"
) -> tuple[MatryoshkaAdaptor, dict[str, Any]]:
    """Load an adaptor directory; checks its d against ``expected_dim`` when given.

    Returns:
        The adaptor in eval mode and the metadata dictionary saved with it.
    """
    from safetensors.torch import load_file

    root = Path(directory)
    config_path = root / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{root}: not an adaptor directory (no {CONFIG_FILE})")
    document = json.loads(config_path.read_text())
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: unsupported format_version "
            f"{document.get('format_version')!r} (expected {FORMAT_VERSION})"
        )
    dim = int(document["dim"])
    if expected_dim is not None and dim != expected_dim:
        raise ValueError(
            f"{root}: dimension mismatch: adaptor was trained for d={dim}, "
            f"embeddings have d={expected_dim}"
        )
    config = AdaptorConfig.model_validate(document["config"])
    state = load_file(str(root / WEIGHTS_FILE))
    rotation = state.get("rotation")
    adaptor = MatryoshkaAdaptor(
        dim, config, rotation if rotation is not None and rotation.numel() else None
    )
    adaptor.load_state_dict(state)
    return adaptor.to(device).eval(), document.get("metadata", {})
