"""The vector dimension a run may trust, and holding responses until it is known.

A single misbehaving response (a 383-d batch from a server that returns 384) must not become
the reference that every correct batch is then measured against. The expected dimension comes
from, in order:

1. ``embedding.dimensions`` (the provider is asked for exactly that size);
2. the provider's documented native size (``documented_dimensions`` of its row in
   :mod:`.specs`, public endpoints only: behind a ``base_url`` any model may answer to the
   name), or the loaded local model's own output size;
3. a dimension verified earlier for the cache namespace (recorded by the cache);
4. a quorum of this run's responses (:class:`DimensionQuorum`): the first dimension seen
   :data:`QUORUM` times, the vectors already in an unverified cache namespace counting as one
   vote. Until then responses are held, not cached.

Example:
    >>> quorum = DimensionQuorum(trusted=None)
    >>> quorum.judge(383, "batch 1"), quorum.judge(384, "batch 2"), quorum.judge(384, "batch 3")
    (False, False, True)
    >>> quorum.take_held()
    (['batch 2'], [('batch 1', 'response vectors have dimension 383, expected 384 (2 agreeing responses)')])
"""  # noqa: E501 - doctest output

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

from .config import EmbeddingConfig
from .errors import ResponseValidationError

T = TypeVar("T")

#: Responses that must agree before an unknown dimension is trusted.
QUORUM = 2


@dataclass(frozen=True)
class ExpectedDimension:
    """A dimension and why it is expected.

    Attributes:
        value: the dimension.
        source: why it is trusted, named in messages (e.g. ``embedding.dimensions``).
        verified: from a trusted source or a quorum, so worth recording for the cache
            namespace; ``False`` for a run's single response accepted for lack of others.
    """

    value: int
    source: str
    verified: bool = True


def configured_dimension(config: EmbeddingConfig, model: str) -> ExpectedDimension | None:
    """The dimension known from the configuration alone: requested, or documented.

    Args:
        config: the embedding settings.
        model: the provider's model id (``ProviderIdentity.model``).
    """
    if config.dimensions is not None:
        return ExpectedDimension(config.dimensions, "embedding.dimensions")
    if config.base_url is None:
        documented = config.spec.documented_dimensions.get(model)
        if documented is not None:
            return ExpectedDimension(documented, f"the documented size of {model}")
    return None


def mismatch_message(dim: int, expected: ExpectedDimension) -> str:
    """What a response of the wrong dimension is rejected with."""
    return f"response vectors have dimension {dim}, expected {expected.value} ({expected.source})"


class DimensionQuorum(Generic[T]):
    """Decides a run's vector dimension; holds responses (``T``) until it is decided.

    Thread-safe. Call :meth:`judge` for every response; once it returns ``False`` the
    response is held and comes back from :meth:`take_held` when the dimension is decided
    (matching: store it; not matching: request it again, as a failed attempt). When no
    further response can come (every remaining batch is held), :meth:`settle` decides from
    what there is, or releases the held responses as rejected so that they are requested
    again and vote anew.

    Args:
        trusted: a dimension known in advance (decides at once), or ``None``.
        cached: the dimension of vectors already in an unverified cache namespace (one vote).
        quorum: agreeing votes needed.
    """

    def __init__(
        self, trusted: ExpectedDimension | None, cached: int | None = None, quorum: int = QUORUM
    ) -> None:
        self._lock = threading.Lock()
        self._decision = trusted
        self._quorum = quorum
        self._votes: Counter[int] = Counter()
        self._cached = cached
        if cached is not None:
            self._votes[cached] += 1
        self._held: list[tuple[T, int]] = []
        self._rejected: list[tuple[T, str]] = []

    @property
    def decision(self) -> ExpectedDimension | None:
        """The decided dimension, or ``None`` while undecided."""
        with self._lock:
            return self._decision

    def holding(self) -> bool:
        """Whether responses wait for a decision (or to be handed back as rejected)."""
        with self._lock:
            return bool(self._held or self._rejected)

    def judge(self, dim: int, response: T) -> bool:
        """``True``: ``response`` matches the decided dimension; ``False``: it is held.

        Raises:
            ResponseValidationError: the dimension is decided and ``dim`` differs.
        """
        with self._lock:
            if self._decision is None:
                self._votes[dim] += 1
                if self._votes[dim] < self._quorum:
                    self._held.append((response, dim))
                    return False
                with_cache = " with the cached vectors" if self._cached == dim else ""
                self._decision = ExpectedDimension(
                    dim, f"{self._quorum} agreeing responses{with_cache}"
                )
            if dim != self._decision.value:
                raise ResponseValidationError(mismatch_message(dim, self._decision))
            return True

    def take_held(self) -> tuple[list[T], list[tuple[T, str]]]:
        """Held responses that can leave now: ``(matching, [(not matching, why), ...])``."""
        with self._lock:
            matching: list[T] = []
            if self._decision is not None:
                for response, dim in self._held:
                    if dim == self._decision.value:
                        matching.append(response)
                    else:
                        self._rejected.append((response, mismatch_message(dim, self._decision)))
                self._held.clear()
            rejected, self._rejected = self._rejected, []
            return matching, rejected

    def settle(self) -> None:
        """No more responses can come: decide if the votes agree, else reject the held ones.

        A lone response (one batch in total, nothing cached) is accepted but not verified.
        """
        with self._lock:
            if self._decision is not None or not self._held:
                return
            if len(self._votes) == 1:
                (dim,) = self._votes
                self._decision = ExpectedDimension(dim, "the run's only response", verified=False)
                return
            tally = ", ".join(f"{n} x {d}" for d, n in sorted(self._votes.items()))
            for response, dim in self._held:
                self._rejected.append(
                    (
                        response,
                        f"response vectors have dimension {dim} but votes disagree ({tally})",
                    )
                )
            self._held.clear()
