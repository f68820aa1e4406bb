"""OpenAI-compatible provider: the official ``openai`` SDK against any ``/v1/embeddings``.

Works with OpenAI, Azure OpenAI (``base_url`` of the deployment), vLLM, Text Embeddings
Inference, Ollama and Infinity. ``dimensions`` is sent when configured. The SDK's own retries
are off (``max_retries=0``); the orchestrator retries. The raw JSON is parsed here so that
both ``float`` and ``base64`` encodings are accepted whatever the server chooses, vectors are
put back in input order by their ``index``, and malformed bodies become retryable errors.

The key is read from ``api_key_env`` at construction and handed to the SDK only; it is never
logged or stored. Servers that need no key (local vLLM/TEI/Ollama) get a placeholder when the
variable is unset and ``base_url`` is given.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import numpy as np

from .config import EmbeddingConfig, Kind, redact_url
from .errors import PermanentError, ProviderSetupError, ResponseValidationError, TransientError
from .providers import EmbeddingProvider, ProviderIdentity
from .validation import check_matrix, stack_vectors, status_error, transport_errors

log = logging.getLogger(__name__)

#: Sent as the key to servers that need none (the SDK insists on a non-empty key).
NO_KEY_PLACEHOLDER = "no-key-needed"


def decode_embedding(value: Any) -> np.ndarray:
    """One ``embedding`` field: a list of floats or base64 little-endian float32."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ResponseValidationError(f"embedding is not valid base64 ({exc})") from None
        if len(raw) % 4:
            raise ResponseValidationError("base64 embedding length is not a multiple of 4")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if isinstance(value, list):
        try:
            return np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ResponseValidationError("embedding contains non-numbers") from None
    raise ResponseValidationError(f"embedding has unexpected type {type(value).__name__}")


def parse_embeddings_response(body: bytes | str, expected_rows: int) -> np.ndarray:
    """Parse an OpenAI embeddings response body into a matrix in input order.

    Raises:
        ResponseValidationError: invalid JSON, missing fields, duplicate/missing indices,
            wrong count or ragged dimensions.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        size = len(body)
        raise ResponseValidationError(
            f"response body is not valid JSON ({size} bytes; {exc.__class__.__name__}: {exc})"
        ) from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ResponseValidationError("response has no 'data' list")
    if len(data) != expected_rows:
        raise ResponseValidationError(
            f"response has {len(data)} vectors for {expected_rows} inputs"
        )
    by_index: dict[int, np.ndarray] = {}
    for position, item in enumerate(data):
        if not isinstance(item, dict) or "embedding" not in item:
            raise ResponseValidationError(f"response item {position} has no 'embedding'")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < expected_rows or index in by_index:
            raise ResponseValidationError(
                f"response item {position} has a bad or duplicate index {index!r}"
            )
        by_index[index] = decode_embedding(item["embedding"])
    return stack_vectors([by_index[i] for i in range(expected_rows)])


class OpenAIProvider(EmbeddingProvider):
    """Embeddings from an OpenAI-compatible HTTP endpoint via the ``openai`` SDK.

    Args:
        config: embedding settings (model, dimensions, base_url, timeout, api_key_env).
        identity: from :func:`~components.embedding.providers.provider_identity`.

    Raises:
        ValueError: no key in the environment for the public OpenAI endpoint.
    """

    def __init__(self, config: EmbeddingConfig, identity: ProviderIdentity) -> None:
        import openai

        self.identity = identity
        self.config = config
        self.dimensions = config.dimensions
        key = config.api_key()
        if not key:
            if config.base_url is None:
                raise ProviderSetupError(
                    f"provider openai needs an API key: set the environment "
                    f"variable {config.key_env()} (or embedding.api_key_env), or "
                    "point embedding.base_url at a server that needs none"
                )
            key = NO_KEY_PLACEHOLDER
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=key, base_url=config.base_url, timeout=config.timeout_s, max_retries=0
        )
        self._url = (redact_url(str(self._client.base_url)) or "").rstrip("/") + "/embeddings"
        self._transport = transport_errors()

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """POST one batch to ``/embeddings`` and return its vectors in input order."""
        openai = self._openai
        extra: dict[str, Any] = {}
        if self.config.dimensions is not None:
            extra["dimensions"] = self.config.dimensions
        try:
            raw = self._client.embeddings.with_raw_response.create(
                input=texts,
                model=self.identity.model,
                encoding_format=self.config.encoding_format,
                **extra,
            )
            body = raw.content
        except openai.APITimeoutError:
            raise TransientError(
                f"request to {self._url} timed out after {self.config.timeout_s:g}s"
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise TransientError(
                f"connection error to {self._url}: {type(cause).__name__}: {cause}"
            ) from None
        except openai.APIStatusError as exc:
            response = exc.response
            raise status_error(
                "openai",
                exc.status_code,
                self._url,
                response.text,
                dict(response.headers),
                self.config.key_env(),
            ) from None
        except self._transport as exc:
            raise TransientError(
                f"connection error to {self._url}: {type(exc).__name__}: {exc}"
            ) from None
        except openai.OpenAIError as exc:
            raise PermanentError(f"openai SDK error for {self._url}: {exc}") from None
        matrix = parse_embeddings_response(body, len(texts))
        return check_matrix(matrix, expected_rows=len(texts), expected_dim=self.config.dimensions)

    def close(self) -> None:
        self._client.close()
