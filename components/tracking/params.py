"""Flattening ``params.yaml`` into MLflow params, with secrets kept out.

``{"method": {"train": {"seed": 0}}}`` becomes ``{"method.train.seed": "0"}``. Values are
written as JSON for anything that is not a string (``true``, ``null``, ``[16, 32]``) so a
param reads back with ``yaml.safe_load`` to the value the run used. API keys never appear
in ``params.yaml`` (it holds only the *name* of the environment variable, e.g.
``embedding.api_key_env``); as a second line of defence any key that looks like a secret is
redacted and credentials inside URLs are masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|token|credential)s?$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def is_secret_key(dotted_key: str) -> bool:
    """True for keys whose value would be a secret (``...api_key``), not a variable name
    (``...api_key_env``)."""
    leaf = dotted_key.rsplit(".", 1)[-1]
    return bool(_SECRET_KEY.search(leaf))


def mask_credentials(text: str) -> str:
    """``https://user:pass@host`` → ``https://***@host``."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def format_param(value: Any) -> str:
    """A param value as a string: strings as-is, everything else as compact JSON."""
    if isinstance(value, str):
        return mask_credentials(value)
    return json.dumps(value, separators=(", ", ": "), default=str)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys → string values; nested mappings are flattened, lists kept whole.

    Secret-looking keys are logged as :data:`REDACTED`; empty mappings are kept as ``{}``.
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, dotted))
        elif is_secret_key(dotted) and value is not None:
            flat[dotted] = REDACTED
        else:
            flat[dotted] = format_param(value)
    return flat


def redact_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted-key overrides safe to record or log: secret-looking keys redacted, URL
    credentials masked."""
    return {
        key: REDACTED
        if is_secret_key(key) and value is not None
        else (mask_credentials(value) if isinstance(value, str) else value)
        for key, value in overrides.items()
    }
