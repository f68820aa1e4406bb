"""Process settings for the flows, applied before Prefect is imported.

Prefect reads its settings when it is imported, so :mod:`pipelines.retraining` imports this
module first. Every value is a default: what the user already exported wins.

* ``PREFECT_HOME`` → ``<repo>/.prefect`` (git-ignored): the temporary local API's database,
  logs and profiles live in the project, not in the user's home;
* ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` → 90 (the temporary API needs ≈18 s
  the first time on a 2-core machine; the default 20 s is too tight);
* telemetry off for every tool (``components.runtime``), DVC's site cache inside the
  project (``.cache/dvc-site``) instead of ``/var/tmp/dvc``.

No ``PREFECT_API_URL`` means Prefect starts a temporary local API for the run; export one
(``prefect server start --host 127.0.0.1``) to see runs in the Prefect UI.
"""

from __future__ import annotations

import os
from pathlib import Path

from components.runtime import configure_environment

#: The repository this package lives in (editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]

PREFECT_DEFAULTS: dict[str, str] = {
    "PREFECT_HOME": str(REPO_ROOT / ".prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DVC_NO_ANALYTICS": "1",
    "DVC_SITE_CACHE_DIR": str(REPO_ROOT / ".cache" / "dvc-site"),
}


def configure_flow_environment() -> None:
    """Offline/telemetry defaults plus :data:`PREFECT_DEFAULTS` (existing values win)."""
    configure_environment()
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
