"""A server that admits few requests at a time: adaptive concurrency and the 429 retry budget.

The OpenAI-protocol test server on 127.0.0.1 admits ``n`` requests in flight and answers 429
at once to the rest, like Text Embeddings Inference or vLLM under a concurrency cap.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.embedding_servers import OpenAITestServer, expected_matrix
from helpers.embedding_servers.helpers import DIM, fast_config

from components.embedding import EmbeddingError, embed_texts
from components.embedding.concurrency import MIN_INCREASE_WINDOW, AdaptiveConcurrencyLimit
from components.embedding.errors import RateLimitedError, TransientError
from components.embedding.providers import close_providers
from components.embedding.retry import RetryPolicy, call_with_retries

KEY = "test-key-concurrency-01"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("TEST_EMBEDDING_API_KEY", KEY)
    with OpenAITestServer(api_key=KEY) as srv:
        yield srv
    close_providers()


@pytest.mark.parametrize("retry_after", [None, 0.02], ids=["no-retry-after", "retry-after"])
def test_server_admitting_one_request_at_a_time_completes(
    server: OpenAITestServer, tmp_path: Path, retry_after: float | None
) -> None:
    server.latency_s = 0.03
    server.limit_in_flight(1, retry_after=retry_after)
    batches, batch_size, max_concurrency = 24, 4, 4
    texts = [f"capped server text {i}" for i in range(batches * batch_size)]
    config = fast_config(
        server, tmp_path, batch_size=batch_size, max_concurrency=max_concurrency, max_retries=3
    )
    matrix = embed_texts(texts, config)  # no EmbeddingError: a 429 is a turn, not a failure
    np.testing.assert_allclose(matrix, expected_matrix(texts, DIM), rtol=1e-6)
    assert sorted(server.all_inputs()) == sorted(texts)  # each batch answered exactly once
    assert server.max_admitted == 1
    # AIMD: the opening burst costs at most (4 - 1) + (2 - 1) = max_concurrency 429s (4 -> 2 ->
    # 1); then the limit probes 1 -> 2 once per MIN_INCREASE_WINDOW successes, one 429 each.
    # Doubled for thread-timing slack; a fixed limit of 4 sees several 429s per batch.
    bound = 2 * (max_concurrency + math.ceil(batches / MIN_INCREASE_WINDOW))
    assert len(server.rejected_busy()) <= bound


def test_server_answering_429_forever_still_fails(server: OpenAITestServer, tmp_path: Path) -> None:
    server.limit_in_flight(0)  # nothing is ever admitted: no progress, every 429 is charged
    texts = [f"refused {i}" for i in range(32)]
    config = fast_config(server, tmp_path, batch_size=4, max_concurrency=4, max_retries=2)
    with pytest.raises(EmbeddingError, match=r"failed after 3 attempt\(s\).*HTTP 429") as info:
        embed_texts(texts, config)
    assert info.value.attempts == 3
    assert server.ok_requests() == []


# --- units ---------------------------------------------------------------------------------
def test_aimd_halves_once_per_congestion_and_grows_after_a_window() -> None:
    limit = AdaptiveConcurrencyLimit(8, min_window=4)
    slots = [limit.slot() for _ in range(4)]
    held = [s.__enter__() for s in slots]  # four requests sent under limit 8
    for slot, entered in zip(slots, held, strict=True):
        entered.overloaded()
        slot.__exit__(None, None, None)
    assert limit.limit == 4  # one congestion signal, not four halvings
    for expected in (2, 1, 1):
        with limit.slot() as slot:
            slot.overloaded()
        assert limit.limit == expected  # never below 1
    for _ in range(4):
        with limit.slot() as slot:
            slot.succeeded()
    assert limit.limit == 2  # +1 after max(limit, min_window) successes
    for _ in range(100):
        with limit.slot() as slot:
            slot.succeeded()
    assert limit.limit == 8  # never above the configured maximum


def test_aimd_blocks_beyond_the_limit() -> None:
    limit = AdaptiveConcurrencyLimit(1)
    entered = threading.Event()
    with limit.slot():

        def second() -> None:
            with limit.slot():
                entered.set()

        worker = threading.Thread(target=second, daemon=True)
        worker.start()
        assert not entered.wait(0.05)  # behaviour, not timing: it has not got in meanwhile
    assert entered.wait(5)
    worker.join(5)


def test_429_followed_by_progress_is_not_charged_and_backoff_resets() -> None:
    progress = [0]
    sleeps: list[float] = []
    calls = [0]

    def busy_then_ok() -> str:
        calls[0] += 1
        if calls[0] <= 10:
            progress[0] += 1  # another batch finished while this one waited
            raise RateLimitedError("HTTP 429")
        return "ok"

    policy = RetryPolicy(max_retries=2, initial_s=1.0, max_s=60.0)
    result = call_with_retries(
        busy_then_ok,
        policy,
        provider="p",
        batch="b",
        sleep=sleeps.append,
        progress=lambda: progress[0],
    )
    assert result == "ok" and calls[0] == 11
    assert all(0.5 <= s <= 1.0 for s in sleeps)  # back to initial_s after every progress


def test_429_without_progress_and_other_failures_are_charged() -> None:
    policy = RetryPolicy(max_retries=2, initial_s=0.0, max_s=0.0)

    def always_429() -> None:
        raise RateLimitedError("HTTP 429")

    with pytest.raises(EmbeddingError, match=r"after 3 attempt") as info:
        call_with_retries(
            always_429, policy, provider="p", batch="b", sleep=lambda s: None, progress=lambda: 7
        )
    assert info.value.attempts == 3
    progress = [0]

    def failing_500() -> None:
        progress[0] += 1  # progress elsewhere does not excuse a server error
        raise TransientError("HTTP 500")

    with pytest.raises(EmbeddingError, match=r"after 3 attempt"):
        call_with_retries(
            failing_500,
            policy,
            provider="p",
            batch="b",
            sleep=lambda s: None,
            progress=lambda: progress[0],
        )
    # attempts already failed elsewhere (a response rejected after it came back) count too
    with pytest.raises(EmbeddingError, match=r"after 3 attempt"):
        call_with_retries(
            always_429, policy, provider="p", batch="b", sleep=lambda s: None, failed_before=1
        )
