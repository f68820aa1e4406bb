"""Process-wide defaults: offline model loading and telemetry switched off.

Set once by every entry point (CLI, flows, benchmarks, tests) before heavy imports. Values
already present in the environment win, so a user can still opt in.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

OFFLINE_AND_PRIVATE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",  # MLflow accepts only the string "true"
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow prints "View run ... at: <tracking URI>" with any credentials the URI carries
    # (basic auth to a team server); the pipeline prints a masked address itself.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure_environment() -> None:
    """Apply :data:`OFFLINE_AND_PRIVATE_ENV` without overriding what the user set."""
    for key, value in OFFLINE_AND_PRIVATE_ENV.items():
        os.environ.setdefault(key, value)
    # DVC otherwise writes under /var/tmp/dvc, outside the project.
    os.environ.setdefault("DVC_SITE_CACHE_DIR", str(REPO_ROOT / ".cache" / "dvc-site"))
