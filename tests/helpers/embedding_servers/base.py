"""A real HTTP embedding server on 127.0.0.1 for tests and benchmarks, with switchable faults.

Subclasses speak one wire protocol (OpenAI ``/v1/embeddings`` or Gemini
``:batchEmbedContents``); this base provides the thread, the deterministic vectors, the
request log, latency, a gate that holds requests, and the faults:

* ``429``: rate limited, with ``Retry-After`` (seconds);
* ``500``: internal server error;
* ``stall``: answer only after ``stall_s`` (past the client's timeout);
* ``truncated``: a JSON body cut in half (valid HTTP, invalid JSON);
* ``count``: one vector fewer than inputs;
* ``dim``: vectors one dimension short;
* ``nan``: a NaN in the first vector;
* ``disconnect``: close the connection without an answer.

Faults are queued (``add_fault(kind, times)``) or permanent (``set_fault(kind)``).

Separately, :meth:`EmbeddingTestServer.limit_in_flight` makes the server behave like Text
Embeddings Inference or vLLM under a concurrency cap: it admits ``n`` requests at a time and
answers 429 at once to the rest (with or without ``Retry-After``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

FAULTS = ("429", "500", "stall", "truncated", "count", "dim", "nan", "disconnect")


def fake_vector(text: str, dim: int) -> np.ndarray:
    """Deterministic float32 vector for ``text`` (same text -> same vector, any process)."""
    seed = int.from_bytes(
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "little"
    )
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def expected_matrix(texts: list[str], dim: int, normalize: bool = True) -> np.ndarray:
    """What a client should end up with for ``texts`` (row-normalised by default)."""
    matrix = np.stack([fake_vector(t, dim) for t in texts]) if texts else np.zeros((0, dim))
    if normalize:
        matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    number: int
    path: str
    inputs: list[str]
    fault: str | None
    status: int = 0
    model: str | None = None
    dimensions: int | None = None
    task_types: list[str | None] = field(default_factory=list)
    encoding_format: str | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.fault is None


class EmbeddingTestServer:
    """Base class: start/stop, faults, log. Subclasses implement :meth:`handle`.

    Args:
        dim: native dimension when the request asks for none.
        latency_s: delay before every answer (throughput benchmarks).
        api_key: required key (``None``: any key accepted).
        stall_s: how long a ``stall`` fault holds the answer.
        retry_after: ``Retry-After`` seconds sent with ``429``.
    """

    def __init__(
        self,
        dim: int = 16,
        latency_s: float = 0.0,
        api_key: str | None = None,
        stall_s: float = 3.0,
        retry_after: float = 0.05,
    ) -> None:
        self.dim = dim
        self.latency_s = latency_s
        self.api_key = api_key
        self.stall_s = stall_s
        self.retry_after = retry_after
        self.requests: list[RequestRecord] = []
        self._faults: deque[str] = deque()
        self._persistent: str | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._hold_after: int | None = None
        self._released = threading.Event()
        self._counter = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._capacity: int | None = None
        self._capacity_retry_after: float | None = None
        self._admitted = 0
        self.max_admitted = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EmbeddingTestServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus
            # the client's delayed ACK adds ~40 ms to every answer.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                server._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(0.05,),
            daemon=True,
            name="embedding-test-server",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> EmbeddingTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- controls ---------------------------------------------------------------------------
    def add_fault(self, kind: str, times: int = 1) -> None:
        """Queue ``kind`` for the next ``times`` requests."""
        assert kind in FAULTS, kind
        with self._lock:
            self._faults.extend([kind] * times)

    def queue(self, kinds: list[str | None]) -> None:
        """Queue one entry per coming request: a fault, or ``None`` for a normal answer
        (which also overrides a permanent fault set by :meth:`set_fault`)."""
        assert all(k is None or k in FAULTS for k in kinds), kinds
        with self._lock:
            self._faults.extend(kinds)

    def set_fault(self, kind: str | None) -> None:
        """Apply ``kind`` to every request from now on (``None`` clears it and the queue)."""
        assert kind is None or kind in FAULTS, kind
        with self._lock:
            self._persistent = kind
            if kind is None:
                self._faults.clear()

    def hold_after(self, n: int | None) -> None:
        """Answer the first ``n`` requests normally; hold later ones until :meth:`release`."""
        with self._lock:
            self._hold_after = n
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def limit_in_flight(self, n: int | None, retry_after: float | None = None) -> None:
        """Admit at most ``n`` requests at once; answer 429 at once to any beyond them, with
        ``Retry-After: retry_after`` when given (``None`` = no header). ``n=None``: no cap."""
        with self._lock:
            self._capacity = n
            self._capacity_retry_after = retry_after

    def rejected_busy(self) -> list[RequestRecord]:
        """Requests answered 429 because :meth:`limit_in_flight` was full."""
        with self._lock:
            return [r for r in self.requests if r.fault == "busy"]

    @property
    def received(self) -> int:
        """Requests received so far (answered, failed or still held)."""
        with self._lock:
            return self._counter

    def ok_requests(self) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.ok]

    def all_inputs(self, ok_only: bool = True) -> list[str]:
        records = self.ok_requests() if ok_only else list(self.requests)
        return [text for r in records for text in r.inputs]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- serving ------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        with self._lock:
            self._counter += 1
            number = self._counter
            busy = self._capacity is not None and self._admitted >= self._capacity
            if busy:
                fault = "busy"
            else:
                fault = self._faults.popleft() if self._faults else self._persistent
                self._admitted += 1
                self.max_admitted = max(self.max_admitted, self._admitted)
            hold = self._hold_after is not None and number > self._hold_after
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        record = RequestRecord(
            number=number, path=handler.path, inputs=[], fault=fault, started=time.monotonic()
        )
        answered = False

        def mark_answered() -> None:
            # Counted out *before* the answer is written: a client may send its next request
            # the moment it reads this one, and must not see it counted twice.
            nonlocal answered
            if not answered:
                answered = True
                with self._lock:
                    self.in_flight -= 1
                    if not busy:
                        self._admitted -= 1

        try:
            if busy:  # like TEI / vLLM: refused at once, without doing the work
                status, body, headers = self._busy_answer()
                record.status = status
                self._write(handler, status, body, headers, mark_answered)
                return
            if hold:
                self._released.wait()
            if self.latency_s:
                time.sleep(self.latency_s)
            status, body, headers = self.handle(handler, raw, record)
            if status == 200 and fault is not None:
                status, body, headers = self._apply_fault(fault, body, record)
            record.status = status
            if status == 0:  # disconnect
                mark_answered()
                handler.close_connection = True
                return
            if fault == "stall":
                self._closing.wait(self.stall_s)
            self._write(handler, status, body, headers, mark_answered)
        except (BrokenPipeError, ConnectionResetError):
            record.status = -1
        finally:
            record.finished = time.monotonic()
            mark_answered()
            with self._lock:
                self.requests.append(record)

    def _write(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str],
        mark_answered: Callable[[], None],
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        mark_answered()
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def _busy_answer(self) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            retry_after = self._capacity_retry_after
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return 429, self.error_body(429, "model is overloaded", "RESOURCE_EXHAUSTED"), headers

    def _apply_fault(
        self, fault: str, body: bytes, record: RequestRecord
    ) -> tuple[int, bytes, dict[str, str]]:
        if fault == "429":
            return (
                429,
                self.error_body(429, "rate limit exceeded", "RESOURCE_EXHAUSTED"),
                {"Retry-After": f"{self.retry_after:g}"},
            )
        if fault == "500":
            return 500, self.error_body(500, "internal error", "INTERNAL"), {}
        if fault == "truncated":
            return 200, body[: len(body) // 2], {}
        if fault == "disconnect":
            return 0, b"", {}
        if fault in ("count", "dim", "nan"):
            return 200, self.corrupt(json.loads(body), fault), {}
        return 200, body, {}  # stall: correct body, late

    def vectors_for(self, inputs: list[str], dimensions: int | None) -> list[np.ndarray]:
        dim = dimensions or self.dim
        return [fake_vector(text, dim) for text in inputs]

    # --- protocol hooks -------------------------------------------------------------------------
    def handle(
        self, handler: BaseHTTPRequestHandler, raw: bytes, record: RequestRecord
    ) -> tuple[int, bytes, dict[str, str]]:
        raise NotImplementedError

    def error_body(self, status: int, message: str, code: str) -> bytes:
        raise NotImplementedError

    def corrupt(self, payload: dict, fault: str) -> bytes:
        raise NotImplementedError
