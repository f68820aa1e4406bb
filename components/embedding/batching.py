"""Turning texts into request-sized work: prefixes, over-long inputs, and batches.

A *text* is what the caller gives; a *unit* is one string actually sent to the provider. Most
texts are one unit. With ``overlong="split"`` a text longer than the input limit becomes
several units whose vectors are averaged (weighted by length) and re-normalised; with
``"truncate"`` it becomes one shortened unit. Nothing is ever dropped. Units are cached by the
sha256 of the unit string itself, so prefixes and truncation are part of the key for free.

API token counts are *estimated* from UTF-8 byte length (``chars_per_token``), because no
tokenizer may be downloaded; the estimate errs on the large side. The local provider counts
real tokens with the model's own tokenizer when it has to split.

Example:
    >>> plan = plan_units(["a b c"], max_tokens=None, overlong="truncate",
    ...                   estimate=lambda s: len(s))
    >>> plan.units, plan.owners
    (['a b c'], [[(0, 1.0)]])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def text_key(unit: str) -> bytes:
    """The cache key of a unit: sha256 of its UTF-8 bytes (32 raw bytes)."""
    return hashlib.sha256(unit.encode("utf-8", "surrogatepass")).digest()


def estimate_tokens(text: str, chars_per_token: float) -> int:
    """Conservative token estimate from the UTF-8 length (at least 1)."""
    return max(1, math.ceil(len(text.encode("utf-8", "surrogatepass")) / chars_per_token))


def _cut_points(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Split ``text`` into spans of at most ``max_chars`` characters, at whitespace if possible."""
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    while start < n:
        end = min(n, start + max_chars)
        if end < n:
            space = text.rfind(" ", start + max_chars // 2, end)
            if space > start:
                end = space
        spans.append((start, end))
        start = end
        while start < n and text[start] == " ":
            start += 1
    return spans or [(0, 0)]


@dataclass(frozen=True)
class UnitPlan:
    """Units to send and, per text, which units make it up and with what weight.

    Attributes:
        units: strings to embed, in text order (duplicates are removed later, by key).
        owners: for each text, ``[(unit index, weight), ...]``; one entry for unsplit texts.
        truncated: how many texts were shortened.
        split: how many texts were split into several units.
    """

    units: list[str]
    owners: list[list[tuple[int, float]]]
    truncated: int = 0
    split: int = 0


def plan_units(
    texts: Sequence[str],
    *,
    max_tokens: int | None,
    overlong: str,
    estimate: Callable[[str], int],
    spans: Callable[[str, int], list[tuple[int, int]]] | None = None,
) -> UnitPlan:
    """Map texts to units, truncating or splitting inputs over ``max_tokens``.

    Args:
        texts: the strings to embed (prefixes already applied).
        max_tokens: most tokens per unit; ``None`` disables the check.
        overlong: ``truncate`` or ``split``.
        estimate: token counter for one string.
        spans: ``(text, max_tokens) -> [(start, end), ...]`` character spans of at most
            ``max_tokens`` tokens each; default: the byte-length estimate, cut at spaces.
    """
    units: list[str] = []
    owners: list[list[tuple[int, float]]] = []
    truncated = split = 0
    for text in texts:
        if max_tokens is None or estimate(text) <= max_tokens:
            owners.append([(len(units), 1.0)])
            units.append(text)
            continue
        pieces = (
            spans(text, max_tokens)
            if spans is not None
            else _cut_points(text, max(1, _default_chars(text, max_tokens, estimate)))
        )
        if overlong == "truncate":
            start, end = pieces[0]
            owners.append([(len(units), 1.0)])
            units.append(text[start:end])
            truncated += 1
            continue
        split += 1
        total = sum(end - start for start, end in pieces) or 1
        entry = []
        for start, end in pieces:
            entry.append((len(units), (end - start) / total))
            units.append(text[start:end])
        owners.append(entry)
    return UnitPlan(units=units, owners=owners, truncated=truncated, split=split)


def _default_chars(text: str, max_tokens: int, estimate: Callable[[str], int]) -> int:
    # Characters per token observed on this text, so the cut respects the estimate.
    tokens = max(1, estimate(text))
    return max(1, int(len(text) * max_tokens / tokens) - 1)


def make_batches(
    sizes: Sequence[int], *, max_items: int, max_tokens: int | None
) -> list[list[int]]:
    """Group positions ``0..n-1`` into batches of at most ``max_items`` and ``max_tokens``.

    ``sizes`` are token estimates in the order the positions should be sent; a single
    position larger than ``max_tokens`` still forms its own batch (the per-input limit has
    already been enforced by :func:`plan_units`).

    Example:
        >>> make_batches([5, 5, 5, 5], max_items=3, max_tokens=12)
        [[0, 1], [2, 3]]
    """
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for position, size in enumerate(sizes):
        if current and (
            len(current) >= max_items or (max_tokens is not None and tokens + size > max_tokens)
        ):
            batches.append(current)
            current, tokens = [], 0
        current.append(position)
        tokens += size
    if current:
        batches.append(current)
    return batches
