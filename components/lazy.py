"""Package namespaces whose names are imported on first use.

A package ``__init__`` that imports all its modules makes ``import components.x.config``
load the whole package: slower start-up, and every stage "depends" on every module (see the
DVC dependency test, ``tests/unit/test_dvc_deps.py``). Packages list their public names
instead, one table per package, and this module imports the right submodule when a name is
first read.

In a package ``__init__``::

    _EXPORTS = {"EmbeddingConfig": "config", "embed_dataset": "extract"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
    __all__ = sorted(_EXPORTS)

Example:
    >>> get, names = lazy_exports("json", {"JSONDecoder": "decoder"})
    >>> get("JSONDecoder").__name__, names()
    ('JSONDecoder', ['JSONDecoder'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name → submodule (relative to ``package``) that defines it.

    Returns:
        The two module-level hooks (PEP 562) to assign in the package ``__init__``.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{submodule}"), name)

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook
        return sorted(exports)

    return __getattr__, __dir__
