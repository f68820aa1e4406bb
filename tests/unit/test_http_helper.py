"""The test suite's JSON client against a real loopback server: it retries what a busy server
means as "try again" (a Prefect server on SQLite answers 503 under load) and nothing else."""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.http import request_json


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``server.script`` (then 200)."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        script: list[int] = self.server.script  # type: ignore[attr-defined]
        status = script.pop(0) if script else 200
        body = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.script, httpd.bodies = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/create"


def test_busy_answers_are_retried_until_the_server_answers(server: ThreadingHTTPServer) -> None:
    server.script[:] = [503, 503, 429]  # type: ignore[attr-defined]
    assert request_json(url(server), {"n": 1}, backoff_s=0.01) == {"ok": True}
    assert server.bodies == [{"n": 1}] * 4  # type: ignore[attr-defined]


def test_other_errors_are_not_retried(server: ThreadingHTTPServer) -> None:
    server.script[:] = [500]  # type: ignore[attr-defined]
    with pytest.raises(urllib.error.HTTPError, match="500"):
        request_json(url(server), {"n": 1}, backoff_s=0.01)
    assert len(server.bodies) == 1  # type: ignore[attr-defined]


def test_a_server_busy_for_every_attempt_raises_its_last_answer(
    server: ThreadingHTTPServer,
) -> None:
    server.script[:] = [503] * 3  # type: ignore[attr-defined]
    with pytest.raises(urllib.error.HTTPError, match="503"):
        request_json(url(server), {"n": 1}, attempts=3, backoff_s=0.01)
    assert len(server.bodies) == 3  # type: ignore[attr-defined]
