"""Atomic-ish artifact directories: build everything in a hidden sibling, then rename.

A reader never sees a half-written validation directory: until the final rename the target
either does not exist or still holds the previous complete run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, payload: Any) -> None:
    """Write JSON (UTF-8, indented, sorted keys off to keep GX's order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
