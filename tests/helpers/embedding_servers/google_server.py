"""Test server speaking the Gemini API REST shape used by ``google-genai``'s ``embed_content``.

``POST /v1/models/{model}:batchEmbedContents`` (google-genai 3.x default; ``/v1beta/`` is
accepted too) with header ``x-goog-api-key`` and body
``{"requests": [{"model": "models/{model}", "content": {"parts": [{"text": ...}]},
"taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 256}]}``; answer
``{"embeddings": [{"values": [...]}]}``. Errors use Google's ``{"error": {"code", "message",
"status"}}`` shape.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler

from .base import EmbeddingTestServer, RequestRecord

# google-genai 3.x calls /v1/ by default (GOOGLE_GENAI_API_VERSION=beta selects /v1beta/).
_PATH = re.compile(r"^/(?P<version>v1|v1beta)/models/(?P<model>[^/:]+):batchEmbedContents$")


class GoogleTestServer(EmbeddingTestServer):
    """``with GoogleTestServer(api_key="k") as server: base_url = server.root_url``."""

    @property
    def base_url(self) -> str:
        return self.root_url

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return json.dumps({"error": {"code": status, "message": message, "status": code}}).encode()

    def handle(
        self, handler: BaseHTTPRequestHandler, raw: bytes, record: RequestRecord
    ) -> tuple[int, bytes, dict[str, str]]:
        match = _PATH.match(handler.path.split("?")[0])
        if match is None:
            return 404, self.error_body(404, f"no route {handler.path}", "NOT_FOUND"), {}
        if self.api_key is not None and handler.headers.get("x-goog-api-key") != self.api_key:
            return 400, self.error_body(400, "API key not valid", "INVALID_ARGUMENT"), {}
        try:
            body = json.loads(raw)
            requests = body["requests"]
            inputs = [r["content"]["parts"][0]["text"] for r in requests]
        except (ValueError, KeyError, IndexError, TypeError):
            return 400, self.error_body(400, "malformed request", "INVALID_ARGUMENT"), {}
        if len(requests) > 100:
            return (
                400,
                self.error_body(400, "at most 100 requests per batch", "INVALID_ARGUMENT"),
                {},
            )
        record.inputs = inputs
        record.model = match.group("model")
        dims = {r.get("outputDimensionality") for r in requests}
        record.dimensions = dims.pop() if len(dims) == 1 else None
        record.task_types = [r.get("taskType") for r in requests]
        # Task type changes the vector, like the real API.
        vectors = [
            self.vectors_for([f"{r.get('taskType')}|{text}"], record.dimensions)[0]
            for r, text in zip(requests, inputs, strict=True)
        ]
        payload = {"embeddings": [{"values": [float(x) for x in v]} for v in vectors]}
        return 200, json.dumps(payload).encode(), {}

    def corrupt(self, payload: dict, fault: str) -> bytes:
        embeddings = payload["embeddings"]
        if fault == "count":
            payload["embeddings"] = embeddings[:-1]
        for item in embeddings:
            if fault == "dim":
                item["values"] = item["values"][:-1]
            if fault == "nan":
                item["values"][0] = float("nan")
        return json.dumps(payload).encode()
