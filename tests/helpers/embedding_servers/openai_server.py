"""Test server speaking the OpenAI embeddings protocol (``POST /v1/embeddings``).

Request ``{"input": str | [str], "model", "dimensions"?, "encoding_format"?}``; response
``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...] |
"<base64 float32>"}], "model", "usage"}``. ``data`` is returned in *reverse* order (with
correct ``index``) so clients must restore order by index, as the protocol allows.
"""

from __future__ import annotations

import base64
import json
from http.server import BaseHTTPRequestHandler

from .base import EmbeddingTestServer, RequestRecord


class OpenAITestServer(EmbeddingTestServer):
    """``with OpenAITestServer(api_key="k") as server: base_url = server.base_url``."""

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return json.dumps(
            {"error": {"message": message, "type": code.lower(), "code": status}}
        ).encode()

    def handle(
        self, handler: BaseHTTPRequestHandler, raw: bytes, record: RequestRecord
    ) -> tuple[int, bytes, dict[str, str]]:
        if handler.path.rstrip("/") != "/v1/embeddings":
            return 404, self.error_body(404, f"no route {handler.path}", "not_found"), {}
        auth = handler.headers.get("Authorization")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            # Like OpenAI, the message quotes the key it got: clients must not pass it on.
            return (
                401,
                self.error_body(401, f"Incorrect API key provided: {auth}", "invalid_api_key"),
                {},
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, self.error_body(400, "invalid JSON", "invalid_request_error"), {}
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(t, str) and t for t in inputs)
        ):
            return (
                400,
                self.error_body(400, "input must be non-empty strings", "invalid_request_error"),
                {},
            )
        record.inputs = list(inputs)
        record.model = body.get("model")
        record.dimensions = body.get("dimensions")
        record.encoding_format = body.get("encoding_format", "float")
        vectors = self.vectors_for(inputs, record.dimensions)
        data = []
        for index, vector in enumerate(vectors):
            if record.encoding_format == "base64":
                value: object = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                value = [float(x) for x in vector]
            data.append({"object": "embedding", "index": index, "embedding": value})
        data.reverse()
        tokens = sum(len(t.split()) for t in inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": record.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return 200, json.dumps(payload).encode(), {}

    def corrupt(self, payload: dict, fault: str) -> bytes:
        data = payload["data"]
        if fault == "count":
            payload["data"] = data[:-1]
        for item in data:
            emb = item["embedding"]
            if isinstance(emb, str):
                import numpy as np

                vec = np.frombuffer(base64.b64decode(emb), dtype="<f4").copy()
                if fault == "dim":
                    vec = vec[:-1]
                if fault == "nan":
                    vec[0] = np.nan
                item["embedding"] = base64.b64encode(vec.astype("<f4").tobytes()).decode()
            else:
                if fault == "dim":
                    item["embedding"] = emb[:-1]
                if fault == "nan":
                    emb[0] = float("nan")
        return json.dumps(payload).encode()
