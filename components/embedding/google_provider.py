"""Google provider: Gemini Developer API or Vertex AI through the official ``google-genai`` SDK.

Calls ``client.models.embed_content``; for the Gemini API the SDK posts to
``/v1/models/{model}:batchEmbedContents`` (google-genai 3.x default; ``/v1beta/`` with
``GOOGLE_GENAI_API_VERSION=beta``), with the task type (``RETRIEVAL_QUERY`` for queries,
``RETRIEVAL_DOCUMENT`` for documents) and ``output_dimensionality``. The SDK's retries are off
(``retry_options=None``); the orchestrator retries. ``base_url`` redirects the SDK (proxies,
test servers). With ``google_vertexai: true`` the SDK authenticates with Application Default
Credentials and reads ``GOOGLE_CLOUD_PROJECT`` / ``GOOGLE_CLOUD_LOCATION``.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from .config import EmbeddingConfig, Kind, redact_url
from .errors import PermanentError, ProviderSetupError, ResponseValidationError, TransientError
from .providers import EmbeddingProvider, ProviderIdentity
from .validation import check_matrix, stack_vectors, status_error, transport_errors

log = logging.getLogger(__name__)


class GoogleProvider(EmbeddingProvider):
    """Embeddings from Gemini / Vertex via ``google.genai``.

    Args:
        config: embedding settings (model, dimensions, base_url, timeout, api_key_env).
        identity: from :func:`~components.embedding.providers.provider_identity`.

    Raises:
        ValueError: Gemini API selected but no key in the environment.
    """

    def __init__(self, config: EmbeddingConfig, identity: ProviderIdentity) -> None:
        from google import genai
        from google.genai import errors, types

        self.identity = identity
        self.config = config
        self.dimensions = config.dimensions
        self._types = types
        self._errors = errors
        http_options = types.HttpOptions(
            base_url=config.base_url,
            timeout=max(1, int(config.timeout_s * 1000)),
            retry_options=None,
        )
        if config.google_vertexai:
            self._client = genai.Client(vertexai=True, http_options=http_options)
        else:
            key = config.api_key()
            if not key:
                raise ProviderSetupError(
                    f"provider google needs an API key: set the environment "
                    f"variable {config.key_env()} (or embedding.api_key_env), or "
                    "use google_vertexai: true with application default "
                    "credentials"
                )
            self._client = genai.Client(api_key=key, http_options=http_options)
        base = redact_url(config.base_url) or "https://generativelanguage.googleapis.com"
        self._url = f"{base.rstrip('/')}/v1/models/{identity.model}:batchEmbedContents"
        self._transport = transport_errors()

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Embed one batch with the task type of ``kind``; vectors in input order."""
        errors = self._errors
        embed_config = self._types.EmbedContentConfig(
            task_type=self.identity.task(kind), output_dimensionality=self.config.dimensions
        )
        try:
            response = self._client.models.embed_content(
                model=self.identity.model, contents=texts, config=embed_config
            )
        except errors.APIError as exc:
            http = getattr(exc, "response", None)
            headers = dict(getattr(http, "headers", {}) or {})
            body = json.dumps(exc.details) if exc.details is not None else str(exc.message)
            raise status_error(
                "google", int(exc.code or 0), self._url, body, headers, self.config.key_env()
            ) from None
        except self._transport as exc:
            kind_name = "timed out" if "Timeout" in type(exc).__name__ else "connection error"
            raise TransientError(
                f"request to {self._url} {kind_name} "
                f"({type(exc).__name__}: {exc}; timeout "
                f"{self.config.timeout_s:g}s)"
            ) from None
        except ValueError as exc:  # JSON decode errors and pydantic validation errors
            raise ResponseValidationError(
                f"malformed response from {self._url}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - SDK raises assorted types; classify by name
            raise PermanentError(
                f"google SDK error for {self._url}: {type(exc).__name__}: {exc}"
            ) from None
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts):
            raise ResponseValidationError(
                f"response has {len(embeddings)} vectors for {len(texts)} inputs"
            )
        vectors = []
        for position, item in enumerate(embeddings):
            if not item.values:
                raise ResponseValidationError(f"response item {position} has no values")
            vectors.append(np.asarray(item.values, dtype=np.float32))
        return check_matrix(
            stack_vectors(vectors), expected_rows=len(texts), expected_dim=self.config.dimensions
        )

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
