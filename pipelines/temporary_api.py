"""Prefect's temporary local API, started at once by ``matryoshka run`` so that it boots while
the flow's modules import.

Without ``PREFECT_API_URL`` Prefect starts this server itself the first time the flow calls
its API: after ~3 s of imports, and after importing the server's own modules (FastAPI app,
database layer, ~1.5 s) into the flow process just to launch a subprocess. At exit it then
waits up to 5 s for the server, which keeps serving the flow process's open keep-alive
connections until it is killed (measured: 2.7–5.3 s of a 20 s warm run). Here the same
command, with the same switches as ``prefect.server.api.server.SubprocessASGIServer``, starts
before any Prefect import; the flow process finds it through ``PREFECT_API_URL``; at exit it
gets SIGTERM after Prefect's own exit handlers (which flush logs and events to it) and a
short grace before SIGKILL (the flow's states are committed by then; SQLite stays whole).

Nothing changes for a user who points Prefect at a server: ``PREFECT_API_URL`` in the
environment or in the active profile, or ephemeral mode switched off
(``PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=false``), and this module starts nothing. It imports
no Prefect module (that is its point): the server's command line is built from the package's
location on disk.

Example:
    >>> api = start_temporary_api()  # doctest: +SKIP
    >>> from pipelines.retraining import retraining_flow  # imports while the API boots
    >>> api.wait_ready()  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds the server gets to exit after SIGTERM before it is killed.
STOP_GRACE_S = 2.0
#: uvicorn's exit status when it could not start (e.g. the port was taken meanwhile).
_STARTUP_FAILURE = 3
_FALSE = {"0", "false", "no", "off"}
_STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"  # pipelines/settings.py


def configured_api_url() -> str | None:
    """The API the user configured: ``PREFECT_API_URL``, else the active profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    settings = (profiles.get("profiles") or {}).get(active) or {}
    value = settings.get("PREFECT_API_URL")
    return str(value) if value else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _site_dir() -> str:
    """The folder holding the ``prefect`` package (uvicorn's ``--app-dir``), found without
    importing it."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the prefect package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


@dataclass
class TemporaryAPI:
    """A Prefect API server subprocess on 127.0.0.1, stopped when this process exits.

    Attributes:
        port: the TCP port it listens on.
        log_path: its output (uvicorn at level ``error``), quoted when it fails to start.
        process: the server process.
    """

    port: int
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        """``PREFECT_API_URL`` of this server."""
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until ``/health`` answers 200 (restarting on a port taken meanwhile).

        Raises:
            RuntimeError: the server exited or did not answer within ``timeout_s``
                (default ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, else 90).
        """
        if timeout_s is None:
            timeout_s = float(os.environ.get(_STARTUP_TIMEOUT, 90))
        deadline = time.monotonic() + timeout_s
        restarts = 0
        while time.monotonic() < deadline:
            code = self.process.poll()
            # uvicorn's 3 is any start-up failure: retried (a port taken meanwhile) twice.
            if code == _STARTUP_FAILURE and restarts < 2:
                restarts += 1
                self.port = _free_port()
                self.process = _launch(self.port, self.log_path)
                os.environ["PREFECT_API_URL"] = self.url
                continue
            if code is not None:
                raise RuntimeError(
                    f"Prefect's temporary API exited with status {code} before it was ready; "
                    f"its log ({self.log_path}): {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"Prefect's temporary API did not answer within {timeout_s:.0f} s "
            f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); its log ({self.log_path}): "
            f"{self._log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S` (idempotent)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:] or "(empty)"
        except OSError:
            return "(unreadable)"


def _launch(port: int, log_path: Path) -> subprocess.Popen:
    """The server process on ``port``, its output appended to ``log_path``."""
    env = {
        **os.environ,
        # what Prefect's own temporary server sets: no UI, the ephemeral server profile
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--app-dir", _site_dir(), "--factory"]
    command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "error", "--lifespan", "on"]
    with log_path.open("ab") as output:
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )


def start_temporary_api() -> TemporaryAPI | None:
    """Start the temporary API and point ``PREFECT_API_URL`` at it; None (nothing started)
    when the user configured an API or switched ephemeral mode off.

    Call before importing Prefect; :meth:`TemporaryAPI.wait_ready` before the first flow.
    """
    if configured_api_url() is not None:
        return None
    if os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true").lower() in _FALSE:
        return None
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "temporary-api.log"
    log_path.write_bytes(b"")  # this run's output only
    port = _free_port()
    api = TemporaryAPI(port, log_path, _launch(port, log_path))
    os.environ["PREFECT_API_URL"] = api.url
    # This server has no UI: an empty UI URL stops Prefect printing "View at" dead links.
    os.environ.setdefault("PREFECT_UI_URL", "")
    # Registered before Prefect is imported, so it runs after Prefect's exit handlers.
    atexit.register(api.stop)
    log.info("Prefect: temporary local API on %s (database in %s)", api.url, home)
    return api
