"""Real HTTP embedding servers on 127.0.0.1 for the embedding tests and benchmarks."""

from .base import FAULTS, EmbeddingTestServer, RequestRecord, expected_matrix, fake_vector
from .google_server import GoogleTestServer
from .openai_server import OpenAITestServer

__all__ = [
    "FAULTS",
    "EmbeddingTestServer",
    "GoogleTestServer",
    "OpenAITestServer",
    "RequestRecord",
    "expected_matrix",
    "fake_vector",
]
