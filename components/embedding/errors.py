"""Errors of the embedding stage, and redaction of secrets from anything that leaves a process.

Providers translate SDK exceptions into two kinds: :class:`TransientError` (worth retrying:
429, 5xx, timeouts, connection drops, malformed responses) and :class:`PermanentError`
(retrying cannot help: bad key, unknown model, bad request). When retries run out, the
orchestrator raises :class:`EmbeddingError` naming the provider, the batch and the last cause.
Every message goes through :func:`redact` first, so an API key can never reach a log line, an
exception or a file, even if a server echoes it back.
"""

from __future__ import annotations

import os
import re

# Anything in the environment whose name says it is a secret is scrubbed as well.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
# Bearer tokens and common key shapes, in case a value is not in the environment.
_SECRET_SHAPES = re.compile(
    r"(Bearer\s+)[A-Za-z0-9._\-]+|\bsk-[A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}"
)


def _secret_values(extra: tuple[str, ...] = ()) -> list[str]:
    values = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8]
    values.extend(v for v in extra if v and len(v) >= 4)
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, *secrets: str) -> str:
    """Replace API keys (given, or found in secret-named env vars) and key shapes by ``***``.

    Example:
        >>> redact("401: key sk-abcdefghijkl is wrong")
        '401: key *** is wrong'
    """
    for value in _secret_values(secrets):
        text = text.replace(value, "***")
    return _SECRET_SHAPES.sub(lambda m: (m.group(1) or "") + "***", text)


class ProviderSetupError(ValueError):
    """The provider cannot start as configured (no API key in the environment, a missing
    local model folder or tokenizer): a settings problem, reported before any request."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) when the server asked for a pause."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(redact(message))
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """HTTP 429: the server is over its rate or concurrency limit, not broken.

    Kept apart from other transient errors because the orchestrator reacts differently: it
    lowers its concurrency, and a 429 followed by other batches' progress is not charged to
    the batch's retry budget.
    """


class PermanentError(Exception):
    """A failure that retrying cannot fix (authentication, bad request, unknown model)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ResponseValidationError(TransientError):
    """The response was received but is wrong (count, dimension, non-finite values, index)."""


class EmbeddingError(RuntimeError):
    """Extraction failed; names the provider, the batch and the last cause.

    Attributes:
        provider: provider name.
        batch: a description of the batch (index, size, position in the shard).
        attempts: how many attempts were made.
        cause: the last error's redacted message.
        transient: the last error was one retrying can fix (a server error, a timeout, a
            rate limit, a faulty response), so running the stage again later may succeed;
            False for a permanent one (authentication, a bad request, an unknown model).
    """

    def __init__(
        self, provider: str, batch: str, attempts: int, cause: str, transient: bool = True
    ) -> None:
        self.provider = provider
        self.batch = batch
        self.attempts = attempts
        self.cause = redact(cause)
        self.transient = transient
        super().__init__(
            f"{provider} provider: {batch} failed after {attempts} attempt(s); last error: "
            f"{self.cause.rstrip('.')}. Everything finished before this batch is in the "
            "cache; re-run to resume (only missing texts are requested)."
        )
