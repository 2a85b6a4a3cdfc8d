"""The API's per-token limit (services/web/api_limit.py) against a real Redis.

Each ApiLimit stands for one gunicorn worker (its own Redis connection and its own shares);
the clock is fixed so that no test straddles a window's edge.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
from typing import Any

import pytest
import redis
from limits import parse

from services.web.api_limit import ApiLimit, lease_size

pytestmark = pytest.mark.redis

NOON = 1_800_000_000.0  # a fixed instant, well inside its second, minute and hour


def _incrby_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_incrby", {}).get("calls", 0))


@pytest.fixture
def store(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return client


def _workers(redis_url: str, limit: str, n: int, clock: Any = lambda: NOON) -> list[ApiLimit]:
    return [ApiLimit(limit, redis_url, clock=clock) for _ in range(n)]


def test_workers_together_never_admit_more_than_the_limit(
    store: redis.Redis, redis_url: str
) -> None:
    workers = _workers(redis_url, "103 per minute", 4)
    admitted = [0] * 4
    for call in range(400):  # the calls spread unevenly over the workers
        worker = (0, 0, 1, 2, 0, 3, 1, 0)[call % 8]
        admitted[worker] += workers[worker].take("token:a") is None
    assert sum(admitted) <= 103
    # leased but unspent shares may refuse a little early: at most (workers - 1) x (lease - 1)
    assert sum(admitted) >= 103 - 3 * (lease_size(parse("103 per minute")) - 1)
    assert all(share > 0 for share in admitted)


def test_a_lease_lets_several_calls_pass_on_one_round_trip(
    store: redis.Redis, redis_url: str
) -> None:
    (worker,) = _workers(redis_url, "100 per second", 1)
    before = _incrby_calls(store)
    assert all(worker.take("token:a") is None for _ in range(100))
    assert _incrby_calls(store) - before == 100 // lease_size(parse("100 per second"))  # 20
    refusal = worker.take("token:a")
    assert refusal is not None
    assert refusal.retry_after == 1
    asked = _incrby_calls(store)
    # told the window is spent, the worker refuses the rest of it without asking Redis
    assert all(worker.take("token:a") is not None for _ in range(50))
    assert _incrby_calls(store) == asked


def test_a_small_limit_is_counted_call_by_call(store: redis.Redis, redis_url: str) -> None:
    first, second = _workers(redis_url, "3 per hour", 2)
    answers = [w.take("token:a") is None for w in (first, second, first, second, first)]
    assert answers == [True, True, True, False, False]
    assert second.take("token:b") is None  # another token, its own count


def test_the_next_window_admits_again(store: redis.Redis, redis_url: str) -> None:
    now = [NOON]
    (worker,) = _workers(redis_url, "5 per second", 1, clock=lambda: now[0])
    assert [worker.take("token:a") is None for _ in range(6)] == [True] * 5 + [False]
    now[0] += 1.0
    assert worker.take("token:a") is None
    # the window's key expires on its own (one second past its end)
    assert 0 < store.ttl(next(iter(store.scan_iter("vein2vein:api:*")))) <= 2


def test_every_limit_of_several_is_kept(store: redis.Redis, redis_url: str) -> None:
    (worker,) = _workers(redis_url, "100 per second; 7 per hour", 1)
    admitted = sum(worker.take("token:a") is None for _ in range(20))
    assert admitted == 7
    refusal = worker.take("token:a")
    assert refusal is not None
    assert str(refusal.limit) == "7 per 1 hour"


def _hammer(redis_url: str, calls: int, results: Any) -> None:
    worker = ApiLimit("510 per hour", redis_url, clock=lambda: NOON)
    results.put(sum(worker.take("token:a") is None for _ in range(calls)))


def test_processes_at_once_never_admit_more_than_the_limit(
    store: redis.Redis, redis_url: str
) -> None:
    """Four real processes at once: the shared count is taken atomically."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_hammer, args=(redis_url, 400, results)) for _ in range(4)]
    for process in processes:
        process.start()
    admitted = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert 510 - 3 * (lease_size(parse("510 per hour")) - 1) <= sum(admitted) <= 510


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_redis_a_worker_counts_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    worker = ApiLimit("4 per hour", f"redis://127.0.0.1:{_closed_port()}/0", clock=lambda: NOON)
    with caplog.at_level(logging.WARNING, logger="services.web.api_limit"):
        answers = [worker.take("token:a") is None for _ in range(6)]
    assert answers == [True] * 4 + [False] * 2  # scans go on; the process keeps the limit
    assert "Redis unreachable" in caplog.text
    # one warning, not one per call: Redis is asked again only after a few seconds
    assert caplog.text.count("Redis unreachable") == 1


def test_a_lease_adds_its_whole_size_to_the_shared_count(
    store: redis.Redis, redis_url: str
) -> None:
    """The lease's size reaches Redis as the amount (limits before 5 read a third positional
    argument as elastic_expiry, and counted a lease of 5 as one call)."""
    (worker,) = _workers(redis_url, "100 per second", 1)
    assert worker.take("token:a") is None
    (key,) = store.scan_iter("vein2vein:api:*")
    assert int(store.get(key) or 0) == lease_size(parse("100 per second")) == 5


def test_a_process_knows_a_spent_window_without_asking(store: redis.Redis, redis_url: str) -> None:
    first, second = _workers(redis_url, "2 per minute", 2)
    assert first.refused_already("addr:a") is None
    assert [first.take("addr:a") is None for _ in range(3)] == [True, True, False]
    asked = _incrby_calls(store)
    refusal = first.refused_already("addr:a")
    assert refusal is not None
    assert 1 <= refusal.retry_after <= 60
    assert _incrby_calls(store) == asked  # known, not asked
    # another process learns it from its own first refusal, not before
    assert second.refused_already("addr:a") is None
    assert second.take("addr:a") is not None
    assert second.refused_already("addr:a") is not None
    assert first.refused_already("addr:b") is None
