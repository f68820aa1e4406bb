"""Response checks shared by all providers, and classification of HTTP failures.

A response is accepted only if it has one vector per input, every vector has the expected
dimension and only finite values. Anything else raises
:class:`~components.embedding.errors.ResponseValidationError`, which is retried like a 5xx
(a proxy that truncates or mixes up responses is usually transient) and reported clearly if
it persists.

Example:
    >>> import numpy as np
    >>> check_matrix(np.ones((2, 3), np.float32), expected_rows=2, expected_dim=3).shape
    (2, 3)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import (
    PermanentError,
    RateLimitedError,
    ResponseValidationError,
    TransientError,
    redact,
)
from .retry import parse_retry_after

#: HTTP statuses worth retrying: timeouts, conflicts, rate limits and server errors.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def check_matrix(matrix: np.ndarray, *, expected_rows: int, expected_dim: int | None) -> np.ndarray:
    """Validate a response matrix; returns it as contiguous float32.

    Raises:
        ResponseValidationError: wrong count, wrong or ragged dimension, NaN/inf values.
    """
    if matrix.ndim != 2 or matrix.shape[0] != expected_rows:
        rows = matrix.shape[0] if matrix.ndim else 0
        raise ResponseValidationError(f"response has {rows} vectors for {expected_rows} inputs")
    if expected_dim is not None and matrix.shape[1] != expected_dim:
        raise ResponseValidationError(
            f"response vectors have dimension {matrix.shape[1]}, expected {expected_dim}"
        )
    if matrix.shape[1] == 0:
        raise ResponseValidationError("response vectors are empty")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix).all(axis=1)).sum())
        raise ResponseValidationError(f"response has {bad} vector(s) with NaN or infinite values")
    return matrix


def stack_vectors(vectors: list[np.ndarray]) -> np.ndarray:
    """Stack 1-d vectors, raising ResponseValidationError if their lengths differ."""
    lengths = {len(v) for v in vectors}
    if len(lengths) > 1:
        raise ResponseValidationError(
            f"response vectors have different dimensions {sorted(lengths)}"
        )
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(vectors).astype(np.float32, copy=False)


def status_error(
    provider: str,
    status: int,
    url: str,
    body: str,
    headers: Mapping[str, str] | None,
    key_env: str | None,
) -> Exception:
    """Turn an HTTP error status into a TransientError or PermanentError with advice."""
    snippet = redact(" ".join(body.split()))[:300]
    where = f"HTTP {status} from {url}"
    if status == 429:
        return RateLimitedError(
            f"rate limited ({where}): {snippet}", retry_after=parse_retry_after(headers)
        )
    if status in RETRYABLE_STATUS:
        return TransientError(
            f"server error ({where}): {snippet}", retry_after=parse_retry_after(headers)
        )
    if status in (401, 403) or (status == 400 and "api key" in body.lower()):
        hint = (
            f"check the key in the environment variable {key_env}"
            if key_env
            else "check the credentials"
        )
        return PermanentError(f"authentication failed ({where}): {hint}. {snippet}")
    if status == 404:
        return PermanentError(
            f"not found ({where}): check embedding.model and embedding.base_url. {snippet}"
        )
    return PermanentError(f"request rejected ({where}): {snippet}")


def transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level exception classes of httpx / httpx2 (whichever is installed)."""
    classes: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        classes.append(module.TransportError)
    return tuple(classes)
