"""Prefect's temporary API as ``matryoshka run`` starts it (pipelines/temporary_api.py): a
real server process, started only when the user configured no API, stopped for good."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from pipelines.temporary_api import configured_api_url, start_temporary_api


@pytest.fixture
def no_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh PREFECT_HOME, no API configured; os.environ restored afterwards."""
    for name in ("PREFECT_API_URL", "PREFECT_UI_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_users_api_is_found_in_the_environment_or_the_active_profile(
    no_api: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert configured_api_url() is None
    no_api.mkdir()
    (no_api / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n'
        "[profiles.ephemeral]\n"
    )
    assert configured_api_url() == "http://10.0.0.5:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")
    assert configured_api_url() is None
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert configured_api_url() == "http://127.0.0.1:4200/api"


def test_nothing_starts_when_an_api_is_configured_or_ephemeral_mode_is_off(
    no_api: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert start_temporary_api() is None
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")
    assert start_temporary_api() is None
    assert not no_api.exists()  # nothing was written either


@pytest.mark.slow
def test_the_server_answers_on_loopback_and_stops(no_api: Path) -> None:
    import os

    api = start_temporary_api()
    assert api is not None
    try:
        assert os.environ["PREFECT_API_URL"] == api.url
        assert api.url.startswith("http://127.0.0.1:") and api.url.endswith("/api")
        assert os.environ["PREFECT_UI_URL"] == ""  # no "View at" links to a UI it lacks
        api.wait_ready(timeout_s=120)
        with urllib.request.urlopen(f"{api.url}/health", timeout=10) as response:
            assert json.loads(response.read()) is True
        assert (no_api / "prefect.db").exists()  # its database is in PREFECT_HOME
    finally:
        api.stop()
    assert api.process.poll() is not None
    api.stop()  # idempotent


@pytest.mark.slow
def test_a_server_that_cannot_start_is_reported_with_its_log(
    no_api: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A database URL under a file (not a folder): the server's start-up fails.
    (tmp_path / "file").write_text("")
    bad = f"sqlite+aiosqlite:///{tmp_path / 'file' / 'prefect.db'}"
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", bad)
    api = start_temporary_api()
    assert api is not None
    with pytest.raises(RuntimeError, match=r"temporary API exited with status \d+ .*its log"):
        api.wait_ready(timeout_s=120)
    assert api.process.poll() is not None
