"""The API's per-token rate limit, counted so that a call seldom waits on the counter store.

Flask-Limiter asks Redis on every call it counts: one round trip on every scan, about 15% of a
scan's throughput under load (bench/scan_floor.py). Here each process *leases* a share of a
token's window at once (one atomic INCRBY for ``lease`` calls) and spends it locally, so one API
call in ``lease`` waits on Redis and the rest on nothing. Every process counts in the same Redis
keys, so the limit holds across gunicorn workers:

- never more than the limit is admitted in a window: a lease takes from the shared count
  atomically and is granted only what is left of it;
- a call may be refused a little early: shares leased by other processes and not yet spent
  count as used, at most ``(processes - 1) x (lease - 1)`` calls of a window;
- once a process is told a window is spent it refuses the rest of that window without asking,
  so a flood is refused at no cost to Redis.

Windows are fixed (``100 per second`` counts calls in each whole second), as Flask-Limiter's
default strategy. ``lease`` is a twentieth of the limit, at least 1 and at most ``LEASE_MAX``:
at the default 100 per second, one call in 5 asks Redis; a limit of 20 or less is counted call
by call, exactly. When Redis cannot be reached the process counts on its own for a few seconds
(as Flask-Limiter's in-memory fallback): scans go on, each worker allowing the full rate.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string

log = logging.getLogger(__name__)

LEASE_MAX = 20  # calls one lease may take: at most one call in 20 waits on Redis
RETRY_REDIS_AFTER = 5.0  # seconds of counting in-process after Redis failed, before asking again
_PRUNE_AT = 4096  # shares kept per process before those of past windows are dropped
# a Redis that hangs must cost a scan a quarter second, not the request
_REDIS_TIMEOUTS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


@dataclass
class _Share:
    ends: float  # when its window ends (time.time())
    left: int = 0  # calls leased and not yet spent
    spent: bool = False  # the shared count said this window is used up


@dataclass(frozen=True)
class Refusal:
    limit: RateLimitItem
    retry_after: int  # whole seconds until the window that refused ends


def lease_size(limit: RateLimitItem) -> int:
    return max(1, min(LEASE_MAX, limit.amount // 20))


def _window(limit: RateLimitItem, credential: str, now: float) -> tuple[str, float]:
    """The counter's key of the credential's window under ``limit`` at ``now``, and when the
    window ends."""
    period = limit.get_expiry()
    window = int(now // period)
    return f"api:{limit.key_for(credential)}:{window}", (window + 1) * period


class ApiLimit:
    """``take(credential)`` before each API call: ``None`` admits it, a ``Refusal`` says why not."""

    def __init__(
        self,
        limits: str,
        storage_url: str,
        *,
        prefix: str = "vein2vein",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = parse_many(limits)
        self._clock = clock
        # the limits library's storages: its Redis one adds and sets the expiry in one script,
        # one round trip; its memory one is the embedded default's and a Redis outage's
        self._memory = MemoryStorage()
        self._shared: Storage | None = None
        if not storage_url.startswith("memory://"):  # the settings took only Redis or memory
            shared = storage_from_string(storage_url, key_prefix=prefix, **_REDIS_TIMEOUTS)
            if not isinstance(shared, Storage):  # an async:// URL: not for a sync worker
                raise ValueError(f"RATELIMIT_STORAGE_URL names an asyncio storage: {storage_url}")
            self._shared = shared
        self._shares: dict[str, _Share] = {}
        self._lock = threading.Lock()  # a gthread worker's threads share one process's shares
        self._redis_failed_at = -math.inf

    def take(self, credential: str) -> Refusal | None:
        now = self._clock()
        for limit in self.limits:
            refusal = self._take(limit, credential, now)
            if refusal is not None:
                return refusal
        return None

    def refused_already(self, credential: str) -> Refusal | None:
        """The refusal this process already knows of for the credential's current window (it
        was told the window is spent), asking no one: ``None`` when it knows of none."""
        now = self._clock()
        with self._lock:
            for limit in self.limits:
                key, ends = _window(limit, credential, now)
                share = self._shares.get(key)
                if share is not None and share.spent:
                    return Refusal(limit, max(1, math.ceil(ends - now)))
        return None

    def _take(self, limit: RateLimitItem, credential: str, now: float) -> Refusal | None:
        period = limit.get_expiry()
        key, ends = _window(limit, credential, now)
        with self._lock:
            share = self._shares.get(key)
            if share is None:
                if len(self._shares) > _PRUNE_AT:
                    self._shares = {k: s for k, s in self._shares.items() if s.ends > now}
                share = self._shares[key] = _Share(ends)
            if not share.left and not share.spent:
                share.left = self._lease(key, limit, period)
                share.spent = share.left == 0
            if share.spent:
                return Refusal(limit, max(1, math.ceil(ends - now)))
            share.left -= 1
            return None

    def _lease(self, key: str, limit: RateLimitItem, period: int) -> int:
        """Take up to a lease of ``limit``'s window from the count; return how many were given."""
        wanted = lease_size(limit)
        count = self._add(key, wanted, period + 1)
        before = count - wanted
        return max(0, min(wanted, limit.amount - before))

    def _add(self, key: str, amount: int, ttl: int) -> int:
        # amount by keyword: before limits 5 the third parameter was elastic_expiry, and a
        # lease passed there counted as one call (pyproject.toml asks for limits 5.1 or newer)
        now = time.monotonic()
        if self._shared is not None and now - self._redis_failed_at >= RETRY_REDIS_AFTER:
            try:
                return self._shared.incr(key, ttl, amount=amount)
            except redis.RedisError as error:
                self._redis_failed_at = now
                log.warning(
                    "API rate limit: Redis unreachable (%s); counting in this process for %.0f s",
                    error,
                    RETRY_REDIS_AFTER,
                )
        return self._memory.incr(key, ttl, amount=amount)
