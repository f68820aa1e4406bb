"""Loopback HTTP for tests that talk to real servers: a free port and JSON requests that retry
the answers a server means as "try again" (no tests here)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

# What Prefect's own client retries (PREFECT_CLIENT_RETRY_EXTRA_CODES aside): a Prefect server
# on SQLite answers 503 while another writer holds the database, which a loaded CI machine hits.
RETRYABLE_STATUS = frozenset({429, 502, 503})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_json(
    url: str,
    payload: Any = None,
    method: str | None = None,
    *,
    attempts: int = 6,
    backoff_s: float = 1.0,
) -> Any:
    """``url``'s JSON answer (None for an empty body); POST when ``payload`` is given.

    Retries a 429/502/503 answer up to ``attempts`` times in all, waiting ``backoff_s``,
    then twice as long each time; any other error, and the last retryable one, is raised.
    """
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json"},
    )
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
            return json.loads(body) if body else None
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_STATUS or attempt == attempts - 1:
                raise
            error.close()
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
