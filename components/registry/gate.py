"""The promotion gate as a pure function over per-dimension metric values.

The challenger passes when, at every counted size m:

* its metric is at least the absolute floor (``ndcg_floor``);
* challenger − champion >= ``min_delta_vs_champion`` (when there is a champion);
* challenger − best baseline >= ``min_delta_vs_baselines`` (always; for a first version,
  with no champion, this is the only comparison).

All values must come from the same frozen evaluation set (see :mod:`.promotion`).

Example:
    >>> from components.registry.config import RegistryConfig
    >>> from components.registry.gate import decide
    >>> decision = decide({64: 0.70, 128: 0.72}, {"base": {64: 0.60, 128: 0.71}},
    ...                   RegistryConfig(), champion={64: 0.69, 128: 0.73})
    >>> decision.passed
    False
    >>> decision.failures[0]
    'm=128: ndcg_at_10 0.7200 is 0.0100 below the champion (0.7300); required change >= +0.0000'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from components.registry.config import RegistryConfig

_EPS = 1e-12


@dataclass(frozen=True)
class DimensionCheck:
    """The gate's verdict at one size m, with every number it used."""

    dim: int
    challenger: float | None
    champion: float | None
    best_baseline: float | None
    best_baseline_method: str | None
    floor: float
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def delta_vs_champion(self) -> float | None:
        if self.challenger is None or self.champion is None:
            return None
        return self.challenger - self.champion

    @property
    def delta_vs_baseline(self) -> float | None:
        if self.challenger is None or self.best_baseline is None:
            return None
        return self.challenger - self.best_baseline


@dataclass(frozen=True)
class GateDecision:
    """All checks; ``passed`` only when every counted size passed."""

    checks: tuple[DimensionCheck, ...]
    metric: str
    has_champion: bool
    champion_version: str | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [message for check in self.checks for message in check.failures]

    @property
    def dims(self) -> list[int]:
        return [check.dim for check in self.checks]

    def summary(self) -> str:
        """One paragraph: PASSED / FAILED and, when failed, which size failed by how much."""
        against = (
            f"champion v{self.champion_version}"
            if self.has_champion
            else "no champion yet (baselines only)"
        )
        if not self.checks:
            return f"Promotion gate FAILED: no size to compare ({against})."
        if self.passed:
            return (
                f"Promotion gate PASSED at m={self.dims} against {against} and the "
                f"baselines ({self.metric})."
            )
        return (
            f"Promotion gate FAILED against {against} ({self.metric}): "
            + "; ".join(self.failures)
            + "."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "metric": self.metric,
            "has_champion": self.has_champion,
            "champion_version": self.champion_version,
            "thresholds": self.thresholds,
            "summary": self.summary(),
            "checks": [
                {
                    **asdict(check),
                    "passed": check.passed,
                    "delta_vs_champion": check.delta_vs_champion,
                    "delta_vs_baseline": check.delta_vs_baseline,
                }
                for check in self.checks
            ],
        }


def counted_dims(
    config: RegistryConfig, trained_dims: Sequence[int], available: Sequence[int] | None = None
) -> list[int]:
    """The sizes the gate checks: ``config.dims`` (or the trained sizes), restricted to the
    sizes the evaluation has when ``available`` is given."""
    dims = sorted({int(m) for m in (config.dims or trained_dims)})
    if available is not None:
        have = {int(m) for m in available}
        dims = [m for m in dims if m in have]
    return dims


def decide(
    challenger: Mapping[int, float],
    baselines: Mapping[str, Mapping[int, float]],
    config: RegistryConfig,
    champion: Mapping[int, float] | None = None,
    dims: Sequence[int] | None = None,
    champion_version: str | int | None = None,
) -> GateDecision:
    """Check the challenger at every counted size (pure: no I/O).

    Args:
        challenger: ``m → metric`` of the challenger.
        baselines: ``method → m → metric`` of the training-free baselines.
        config: thresholds (``ndcg_floor``, ``min_delta_vs_champion``,
            ``min_delta_vs_baselines``, ``dims``).
        champion: ``m → metric`` of the current champion, ``None`` without one.
        dims: sizes to check (default: ``config.dims`` or the challenger's sizes).
        champion_version: shown in the messages.
    """
    sizes = sorted({int(m) for m in (dims or config.dims or challenger)})
    champion_label = (
        f"the champion (v{champion_version}, " if champion_version is not None else "the champion ("
    )
    checks = []
    for m in sizes:
        failures: list[str] = []
        value = challenger.get(m)
        floor = config.floor_at(m)
        champion_value = None if champion is None else champion.get(m)
        present = {name: values[m] for name, values in baselines.items() if m in values}
        best_name = max(present, key=lambda name: present[name]) if present else None
        best_value = present[best_name] if best_name is not None else None
        if value is None:
            failures.append(f"m={m}: the challenger has no {config.metric} value")
        else:
            if value < floor - _EPS:
                failures.append(
                    f"m={m}: {config.metric} {value:.4f} is {floor - value:.4f} "
                    f"below the floor {floor:.4f}"
                )
            if champion is not None:
                if champion_value is None:
                    failures.append(f"m={m}: the champion has no {config.metric} value")
                elif value - champion_value < config.min_delta_vs_champion - _EPS:
                    failures.append(
                        _delta_message(
                            m,
                            config.metric,
                            value,
                            champion_value,
                            f"{champion_label}{champion_value:.4f})",
                            config.min_delta_vs_champion,
                        )
                    )
            if best_value is not None and (
                value - best_value < config.min_delta_vs_baselines - _EPS
            ):
                failures.append(
                    _delta_message(
                        m,
                        config.metric,
                        value,
                        best_value,
                        f"the best baseline {best_name} ({best_value:.4f})",
                        config.min_delta_vs_baselines,
                    )
                )
        checks.append(
            DimensionCheck(m, value, champion_value, best_value, best_name, floor, tuple(failures))
        )
    thresholds = {
        "ndcg_floor": config.ndcg_floor,
        "min_delta_vs_champion": config.min_delta_vs_champion,
        "min_delta_vs_baselines": config.min_delta_vs_baselines,
        "dims": sizes,
        "baselines": list(baselines),
    }
    return GateDecision(
        tuple(checks),
        config.metric,
        champion is not None,
        None if champion_version is None else str(champion_version),
        thresholds,
    )


def _delta_message(
    m: int, metric: str, value: float, other: float, label: str, required: float
) -> str:
    delta = value - other
    how = f"is {-delta:.4f} below" if delta < 0 else f"is only {delta:.4f} above"
    return f"m={m}: {metric} {value:.4f} {how} {label}; required change >= {required:+.4f}"
