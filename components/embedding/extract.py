"""Orchestration: texts -> cached vectors -> matrices, in shards that can run anywhere.

The flow for one list of texts of one kind (``document`` or ``query``):

1. :func:`plan_shards` cuts positions ``0..n`` into shards of ``shard_size`` texts.
2. :func:`embed_shard` (one independent task per shard; shards share only the cache)
   prepares the shard's texts (prefix, truncate/split), keys them by sha256, asks the cache
   which are missing, and fetches only those: length-sorted batches within the provider's
   limits, at most ``max_concurrency`` in flight (fewer while the server answers 429),
   rate-limited, retried, validated, normalised, and written to the cache batch by batch as
   they finish, once their vector dimension is trusted (see :mod:`.dimensions`).
3. :func:`collect_embeddings` assembles the ``[n, d]`` float32 matrix in input order from the
   cache (split texts: length-weighted mean of their pieces, re-normalised).

:func:`embed_texts` runs the three steps in-process; :func:`embed_dataset` does it for a
dataset's corpus and queries and writes the matrices the training stage reads. A Prefect flow
can instead map :func:`embed_shard` over :func:`plan_shards` and then call
:func:`embed_dataset`, which finds everything cached.

Example:
    >>> from components.embedding import EmbeddingConfig, embed_texts
    >>> X = embed_texts(["a cat", "a dog"], EmbeddingConfig(), kind="document")  # doctest: +SKIP
    >>> X.shape, X.dtype  # doctest: +SKIP
    ((2, 384), dtype('float32'))
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .batching import make_batches, plan_units, text_key
from .cache import EmbeddingCache, Namespace, keys_array
from .concurrency import AdaptiveConcurrencyLimit
from .config import EmbeddingConfig, Kind
from .dimensions import DimensionQuorum, ExpectedDimension, configured_dimension
from .errors import EmbeddingError, RateLimitedError
from .progress import Progress
from .providers import (
    BUNDLED_MODEL_NAME,
    EmbeddingProvider,
    ProviderIdentity,
    byte_estimator,
    get_provider,
    provider_identity,
)
from .ratelimit import RateLimiter
from .retry import RetryPolicy, call_with_retries
from .store import EmbeddingArtifacts, save_embeddings
from .validation import check_matrix

if TYPE_CHECKING:
    from components.data import RetrievalDataset

log = logging.getLogger(__name__)

#: Batch files in a namespace before :func:`embed_texts` merges them into one pack. Reading
#: a few hundred small files costs milliseconds; deleting them costs ~3 ms each on slow file
#: systems, so packing only pays off for large caches.
COMPACT_MIN_SEGMENTS = 1000
#: Passes over a shard's missing texts: the second one requests the texts whose cached
#: vectors were quarantined when the run decided the dimension; a third is a safety margin.
MAX_ROUNDS = 3


# --- shards -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Positions ``[start, stop)`` of a list of texts of one ``kind``."""

    index: int
    start: int
    stop: int
    kind: Kind = "document"

    def __len__(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        what = "queries" if self.kind == "query" else "documents"
        return f"shard {self.index} ({what} {self.start}-{self.stop - 1})"


@dataclass(frozen=True)
class ShardReport:
    """What :func:`embed_shard` did.

    Attributes:
        shard: the shard.
        texts: texts in the shard.
        units: distinct strings to embed (after truncation/splitting and deduplication).
        cached: of those, already in the cache.
        embedded: newly embedded and written to the cache.
        requests: batches sent (retries not counted).
        truncated / split: over-long texts truncated / split.
        seconds: wall time.
    """

    shard: Shard
    texts: int
    units: int
    cached: int
    embedded: int
    requests: int
    truncated: int
    split: int
    seconds: float


def plan_shards(n_texts: int, config: EmbeddingConfig, *, kind: Kind = "document") -> list[Shard]:
    """Cut ``n_texts`` positions into shards of ``config.shard_size``.

    Example:
        >>> [(s.start, s.stop) for s in plan_shards(5, EmbeddingConfig(shard_size=2))]
        [(0, 2), (2, 4), (4, 5)]
    """
    size = config.shard_size
    return [
        Shard(index=i, start=start, stop=min(n_texts, start + size), kind=kind)
        for i, start in enumerate(range(0, n_texts, size))
    ]


# --- per-process shared state -------------------------------------------------------------
_CACHES: dict[tuple[str, Namespace], EmbeddingCache] = {}
_LIMITERS: dict[EmbeddingConfig, RateLimiter] = {}
_CONCURRENCY: dict[EmbeddingConfig, AdaptiveConcurrencyLimit] = {}
_STATE_LOCK = threading.Lock()


def namespace_for(config: EmbeddingConfig, identity: ProviderIdentity, kind: Kind) -> Namespace:
    """The cache namespace of texts of ``kind`` under ``config``."""
    return Namespace(
        provider=identity.provider,
        model=identity.model,
        dimensions=config.dimensions,
        normalize=config.normalize,
        task=identity.task(kind),
        tag=config.cache_tag,
    )


def open_cache(
    config: EmbeddingConfig, kind: Kind, identity: ProviderIdentity | None = None
) -> EmbeddingCache:
    """The (process-wide shared) cache for texts of ``kind`` under ``config``."""
    identity = identity or provider_identity(config)
    namespace = namespace_for(config, identity, kind)
    key = (str(Path(config.cache_dir).resolve()), namespace)
    with _STATE_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            expected = configured_dimension(config, identity.model)
            cache = EmbeddingCache(config.cache_dir, namespace, expected)
            _CACHES[key] = cache
        return cache


def _limiter(config: EmbeddingConfig) -> RateLimiter:
    with _STATE_LOCK:
        limiter = _LIMITERS.get(config)
        if limiter is None:
            limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
            _LIMITERS[config] = limiter
        return limiter


def _concurrency(config: EmbeddingConfig) -> AdaptiveConcurrencyLimit:
    """The process-wide limit on requests in flight for ``config``: what it learnt about the
    server's capacity carries over to the next shard instead of being paid for again."""
    with _STATE_LOCK:
        limit = _CONCURRENCY.get(config)
        if limit is None:
            limit = AdaptiveConcurrencyLimit(config.max_concurrency)
            _CONCURRENCY[config] = limit
        return limit


# --- preparing units ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Prepared:
    units: list[str]
    owners: list[list[tuple[int, float]]]
    keys: np.ndarray  # S32 per unit
    sizes: list[int]  # token estimate per unit
    truncated: int
    split: int


_TOKENIZERS: dict[str, object] = {}


def _token_tools(
    config: EmbeddingConfig, identity: ProviderIdentity
) -> tuple[Callable[[str], int], Callable[[str, int], list[tuple[int, int]]] | None, int | None]:
    """(estimate, spans, max tokens per unit) for planning, without loading any model."""
    if identity.spec.estimates_tokens_from_bytes:
        return byte_estimator(config.chars_per_token), None, identity.max_input_tokens
    if config.overlong == "truncate" or identity.max_input_tokens is None:
        # The model truncates to max_seq_length itself; its identity includes that limit.
        return len, None, None
    from .local import LocalTokenizer

    assert identity.model_path is not None
    cache_key = f"{identity.model_path}:{identity.max_input_tokens}"
    tokenizer = _TOKENIZERS.get(cache_key)
    if tokenizer is None:
        tokenizer = LocalTokenizer(identity.model_path, identity.max_input_tokens)
        _TOKENIZERS[cache_key] = tokenizer
    assert isinstance(tokenizer, LocalTokenizer)
    return tokenizer.count, tokenizer.spans, tokenizer.budget


def _prepare(
    texts: Sequence[str], config: EmbeddingConfig, identity: ProviderIdentity, kind: Kind
) -> _Prepared:
    prefix = config.prefix(kind)
    sent = [prefix + t for t in texts] if prefix else list(texts)
    if identity.spec.sends_empty_as_space:
        # APIs reject empty inputs; a single space embeds "nothing" deterministically.
        sent = [s if s.strip() else " " for s in sent]
    estimate, spans, max_tokens = _token_tools(config, identity)
    plan = plan_units(
        sent, max_tokens=max_tokens, overlong=config.overlong, estimate=estimate, spans=spans
    )
    keys = keys_array([text_key(u) for u in plan.units])
    sizes = (
        [estimate(u) for u in plan.units]
        if identity.spec.estimates_tokens_from_bytes
        else [len(u) for u in plan.units]
    )
    return _Prepared(plan.units, plan.owners, keys, sizes, plan.truncated, plan.split)


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        log.warning("%d zero vector(s) cannot be normalised and stay zero", int((norms == 0).sum()))
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32, copy=False)


# --- the worker ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    """One batch: what to send, where it goes in the cache, and its failed attempts so far."""

    texts: list[str]
    keys: np.ndarray
    tokens: int
    label: str
    failed_attempts: int = 0


class _BatchRunner:
    """Sends batches with retries, validates, normalises and caches each as it finishes.

    Responses are cached only once their dimension is trusted (see
    :mod:`components.embedding.dimensions`); until then they are held by ``self.dimension``
    and the scheduler calls :meth:`resolve_held` / :meth:`settle`.
    """

    def __init__(
        self,
        config: EmbeddingConfig,
        provider: EmbeddingProvider,
        cache: EmbeddingCache,
        kind: Kind,
        progress: Progress | None,
    ) -> None:
        self.config, self.provider, self.cache, self.kind = config, provider, cache, kind
        self.progress = progress
        self.limiter = _limiter(config)
        self.policy = RetryPolicy(
            max_retries=config.max_retries,
            initial_s=config.backoff_initial_s,
            max_s=config.backoff_max_s,
        )
        self.stop = threading.Event()
        self.in_flight = _concurrency(config)
        self._answered = 0  # successful requests of any batch: progress, for the retry budget
        self._lock = threading.Lock()
        trusted = (
            configured_dimension(config, provider.identity.model)
            or _model_dimension(provider)
            or cache.expected_dim
        )
        if trusted is not None:
            cache.trust(trusted)  # sets aside cached files of another dimension
        # Vectors already cached but never verified are one vote, not the reference.
        self.dimension: DimensionQuorum[tuple[_Job, np.ndarray]] = DimensionQuorum(
            trusted, cached=cache.dim if trusted is None else None
        )
        self._cache_trusts_decision = trusted is not None
        self._trust_lock = threading.Lock()  # no put before the cache knows the decision

    def answered(self) -> int:
        """Requests answered successfully so far (any batch)."""
        with self._lock:
            return self._answered

    def _attempt(self, job: _Job) -> np.ndarray | None:
        """One request; the checked matrix, or ``None`` when it is held for the quorum."""
        # Bounds requests in flight; validation and cache writes happen outside.
        with self.in_flight.slot() as slot:
            self.limiter.acquire(job.tokens)
            try:
                matrix = self.provider.embed_batch(job.texts, self.kind)
            except RateLimitedError:
                slot.overloaded()
                raise
            slot.succeeded()
        with self._lock:
            self._answered += 1
        matrix = check_matrix(np.asarray(matrix), expected_rows=len(job.texts), expected_dim=None)
        matrix = _normalize(matrix) if self.config.normalize else matrix
        return matrix if self.dimension.judge(matrix.shape[1], (job, matrix)) else None

    def run(self, job: _Job) -> None:
        """Fetch one batch (with retries) and cache it, or leave it held for the quorum."""
        calls = 0

        def attempt() -> np.ndarray | None:
            nonlocal calls
            calls += 1  # a held response remembers the attempts that failed before it
            return self._attempt(replace(job, failed_attempts=job.failed_attempts + calls - 1))

        matrix = call_with_retries(
            attempt,
            self.policy,
            provider=self.provider.identity.provider,
            batch=job.label,
            on_retry_after=self.limiter.pause,
            stop=self.stop,
            progress=self.answered,
            failed_before=job.failed_attempts,
        )
        if matrix is not None:
            self._store(job, matrix)

    def _store(self, job: _Job, matrix: np.ndarray) -> None:
        with self._trust_lock:
            decision = self.dimension.decision
            if not self._cache_trusts_decision and decision is not None:
                if decision.verified:  # record it; set aside cached vectors that disagree
                    self.cache.trust(decision)
                self._cache_trusts_decision = True
        self.cache.put(job.keys, matrix)
        if self.progress is not None:
            self.progress.update(len(job.texts))

    def holding(self) -> bool:
        """Whether responses wait for the dimension to be decided."""
        return self.dimension.holding()

    def settle(self) -> None:
        """Nothing else is in flight or queued: decide with what is held, or reject it."""
        self.dimension.settle()

    def resolve_held(self, requeue: bool = True) -> list[_Job]:
        """Cache held responses that match the decided dimension; return the jobs to request
        again (the others, each charged one failed attempt; none when ``requeue`` is off,
        as when the run is failing anyway).

        Raises:
            EmbeddingError: a rejected batch has no retries left.
        """
        matching, rejected = self.dimension.take_held()
        for job, matrix in matching:
            self._store(job, matrix)
        if not requeue:
            return []
        again = []
        for (job, _), why in rejected:
            failed = job.failed_attempts + 1
            if failed > self.policy.max_retries:
                raise EmbeddingError(self.provider.identity.provider, job.label, failed, why)
            log.warning(
                "%s: %s attempt %d rejected (%s); requesting it again",
                self.provider.identity.provider,
                job.label,
                failed,
                why,
            )
            again.append(replace(job, failed_attempts=failed))
        return again


def _model_dimension(provider: EmbeddingProvider) -> ExpectedDimension | None:
    """The loaded local model's own output size (API providers know theirs from the config)."""
    if not provider.identity.spec.reads_model_directory or not provider.dimensions:
        return None
    return ExpectedDimension(int(provider.dimensions), "the local model's output size")


def _plan_jobs(
    prepared: _Prepared,
    missing: np.ndarray,
    config: EmbeddingConfig,
    identity: ProviderIdentity,
    shard: Shard,
) -> list[_Job]:
    """Length-sorted batches of the missing units, within the provider's limits."""
    # Longest first, like SentenceTransformer.encode: similar lengths share a batch.
    order = sorted(missing.tolist(), key=lambda i: -len(prepared.units[i]))
    batches = make_batches(
        [prepared.sizes[i] for i in order],
        max_items=min(config.batch_size, identity.max_batch_size),
        max_tokens=config.effective_max_batch_tokens()
        if identity.spec.limits_batch_tokens
        else None,
    )
    jobs = []
    for number, batch in enumerate(batches, start=1):
        idx = [order[p] for p in batch]
        jobs.append(
            _Job(
                texts=[prepared.units[i] for i in idx],
                keys=prepared.keys[idx],
                tokens=sum(prepared.sizes[i] for i in idx),
                label=f"{shard.describe()}, batch {number}/{len(batches)} ({len(idx)} texts)",
            )
        )
    return jobs


def embed_shard(
    texts: Sequence[str],
    shard: Shard,
    config: EmbeddingConfig,
    *,
    progress: Progress | None = None,
    identity: ProviderIdentity | None = None,
) -> ShardReport:
    """Embed the texts of one shard that are not cached yet, writing them to the cache.

    Safe to run as an independent task (another thread, process or machine sharing
    ``cache_dir``); re-running a finished shard makes no request.

    Args:
        texts: the full list the shard indexes into (only ``texts[start:stop]`` is read).
        shard: from :func:`plan_shards`.
        config: embedding settings.
        progress: optional shared progress counter.
        identity: ``provider_identity(config)`` when the caller has it already.

    Raises:
        EmbeddingError: a batch failed for good; batches finished before stay cached.
    """
    started = time.monotonic()
    identity = identity or provider_identity(config)
    cache = open_cache(config, shard.kind, identity)
    cache.refresh()
    prepared = _prepare(texts[shard.start : shard.stop], config, identity, shard.kind)
    _, first = np.unique(prepared.keys, return_index=True)
    unique = np.sort(first)

    def still_missing() -> np.ndarray:
        return unique[~cache.contains(prepared.keys[unique])]

    missing = still_missing()
    report = dict(
        shard=shard,
        texts=len(shard),
        units=len(unique),
        cached=len(unique) - len(missing),
        truncated=prepared.truncated,
        split=prepared.split,
    )
    if len(missing) == 0:
        return ShardReport(**report, embedded=0, requests=0, seconds=time.monotonic() - started)
    provider = get_provider(config, identity)
    runner = _BatchRunner(config, provider, cache, shard.kind, progress)
    embedded = requests = 0
    for _ in range(MAX_ROUNDS):
        missing = still_missing()  # also what was quarantined once the dimension was known
        if len(missing) == 0:
            break
        jobs = _plan_jobs(prepared, missing, config, identity, shard)
        if not identity.spec.runs_batches_concurrently or config.max_concurrency == 1:
            _run_sequentially(runner, jobs)
        else:
            _run_concurrently(runner, jobs, config.max_concurrency)
        embedded += len(missing)
        requests += len(jobs)
    return ShardReport(
        **report, embedded=embedded, requests=requests, seconds=time.monotonic() - started
    )


def _run_sequentially(runner: _BatchRunner, jobs: list[_Job]) -> None:
    """Run jobs one after another on this thread (the local model, ``max_concurrency: 1``);
    held responses are resolved as soon as the dimension is decided."""
    queue = deque(jobs)
    while queue or runner.holding():
        if queue:
            runner.run(queue.popleft())
        else:
            runner.settle()
        queue.extend(runner.resolve_held())


def _run_concurrently(runner: _BatchRunner, jobs: list[_Job], max_concurrency: int) -> None:
    """Run jobs on ``2 x max_concurrency`` threads, of which at most ``runner.in_flight.limit``
    (adaptive, at most ``max_concurrency``) hold a request open: while one thread validates and
    writes its batch to the cache, the next request is already on the wire. Held responses
    never block a thread; this loop resolves them (and requeues rejected ones). On a permanent
    failure stop submitting, let in-flight batches finish (they are cached), then raise the
    first error."""
    error: BaseException | None = None
    pending: set[Future] = set()
    queue = deque(jobs)
    workers = 2 * max_concurrency
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed") as executor:
        try:
            while True:
                while error is None and queue and len(pending) < workers:
                    pending.add(executor.submit(runner.run, queue.popleft()))
                if pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        exc = future.exception()
                        if exc is not None and error is None:
                            error = exc
                            runner.stop.set()
                elif error is None and runner.holding():
                    runner.settle()  # every remaining batch is held: no vote can come
                else:
                    break
                if error is None:
                    try:
                        queue.extend(runner.resolve_held())
                    except EmbeddingError as exc:
                        error = exc
                        runner.stop.set()
        except BaseException:
            runner.stop.set()
            for future in pending:
                future.cancel()
            raise
    if error is not None:
        runner.resolve_held(requeue=False)  # what was answered and checked stays cached
        raise error


# --- assembling -----------------------------------------------------------------------------
def collect_embeddings(
    texts: Sequence[str],
    config: EmbeddingConfig,
    *,
    kind: Kind = "document",
    identity: ProviderIdentity | None = None,
) -> np.ndarray:
    """The ``[len(texts), d]`` float32 matrix, in input order, read from the cache.

    ``identity``: ``provider_identity(config)`` when the caller has it already.

    Raises:
        KeyError: some texts are not cached yet (run :func:`embed_shard` on every shard).
    """
    identity = identity or provider_identity(config)
    cache = open_cache(config, kind, identity)
    cache.refresh()
    prepared = _prepare(texts, config, identity, kind)
    if not texts:
        return np.zeros((0, cache.dim or config.dimensions or 0), dtype=np.float32)
    vectors = cache.get(prepared.keys)
    if all(len(owner) == 1 for owner in prepared.owners):
        rows = np.fromiter(
            (owner[0][0] for owner in prepared.owners), dtype=np.int64, count=len(prepared.owners)
        )
        return np.ascontiguousarray(vectors[rows])
    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
    for position, owner in enumerate(prepared.owners):
        if len(owner) == 1:
            out[position] = vectors[owner[0][0]]
        else:
            out[position] = sum(weight * vectors[unit] for unit, weight in owner)
    return _normalize(out) if config.normalize else out


def embed_texts(
    texts: Sequence[str],
    config: EmbeddingConfig,
    *,
    kind: Kind = "document",
    desc: str | None = None,
    identity: ProviderIdentity | None = None,
) -> np.ndarray:
    """Embed ``texts`` (through the cache) and return float32 ``[n, d]`` in input order.

    Args:
        texts: strings to embed.
        config: provider, model, limits, cache location.
        kind: ``document`` or ``query`` (task type / prefix where the provider uses one).
        desc: label for progress and logs (default: the kind).
        identity: ``provider_identity(config)`` when the caller has it already.

    Raises:
        EmbeddingError: a batch failed for good (names provider, batch and cause); all
            batches finished before are cached, so a re-run resumes.
    """
    texts = list(texts)
    desc = desc or ("queries" if kind == "query" else "documents")
    identity = identity or provider_identity(config)
    cache = open_cache(config, kind, identity)
    cache.refresh()
    prepared = _prepare(texts, config, identity, kind)
    _, first = np.unique(prepared.keys, return_index=True)
    todo = int((~cache.contains(prepared.keys[first])).sum()) if len(first) else 0
    log.info(
        "%s: %d texts, %d distinct inputs, %d cached, %d to embed (%s, %s)",
        desc,
        len(texts),
        len(first),
        len(first) - todo,
        todo,
        identity.provider,
        identity.model,
    )
    if prepared.truncated or prepared.split:
        log.info(
            "%s: %d over-long texts truncated, %d split (max %s tokens)",
            desc,
            prepared.truncated,
            prepared.split,
            identity.max_input_tokens,
        )
    if todo:
        get_provider(config, identity)  # load the model / client before the clock starts
        with Progress(
            todo, desc, mode=config.progress, interval_s=config.progress_interval_s
        ) as progress:
            for shard in plan_shards(len(texts), config, kind=kind):
                embed_shard(texts, shard, config, progress=progress, identity=identity)
        cache.compact(min_segments=COMPACT_MIN_SEGMENTS)
    return collect_embeddings(texts, config, kind=kind, identity=identity)


def embed_dataset(
    dataset: RetrievalDataset, config: EmbeddingConfig, out_dir: str | Path
) -> EmbeddingArtifacts:
    """Embed a dataset's corpus (documents) and queries and write the matrices to ``out_dir``.

    Writes ``corpus.npy``, ``queries.npy``, ``corpus_ids.json``, ``queries_ids.json`` and,
    last, ``meta.json`` (see :mod:`components.embedding.store`).

    Example:
        >>> from components.data import load_dataset
        >>> embed_dataset(load_dataset("data/scifact"), EmbeddingConfig(),
        ...               "runs/embeddings")  # doctest: +SKIP
    """
    identity = provider_identity(config)  # once: a local model's fingerprint reads its files
    started = datetime.now(UTC)
    corpus = embed_texts(
        dataset.corpus_texts(), config, kind="document", desc="corpus", identity=identity
    )
    queries = embed_texts(
        dataset.query_texts(), config, kind="query", desc="queries", identity=identity
    )
    if len(queries) == 0:
        queries = np.zeros((0, corpus.shape[1]), dtype=np.float32)
    meta = {
        "provider": identity.provider,
        "model": config.model if config.model is not None else BUNDLED_MODEL_NAME,
        "model_id": identity.model,
        "dimensions": int(corpus.shape[1]),
        "requested_dimensions": config.dimensions,
        "normalize": config.normalize,
        "task_types": {"document": identity.task("document"), "query": identity.task("query")},
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint(),
        "n_corpus": int(corpus.shape[0]),
        "n_queries": int(queries.shape[0]),
        "started_at": started.isoformat(),
        "cache_namespaces": {
            kind: namespace_for(config, identity, kind).id for kind in ("document", "query")
        },
        "config": config.public_dict(),
    }
    return save_embeddings(
        out_dir,
        corpus_ids=dataset.corpus["id"].tolist(),
        corpus=corpus,
        query_ids=dataset.queries["id"].tolist(),
        queries=queries,
        meta=meta,
    )


__all__ = [
    "EmbeddingError",
    "Shard",
    "ShardReport",
    "collect_embeddings",
    "embed_dataset",
    "embed_shard",
    "embed_texts",
    "open_cache",
    "plan_shards",
]
