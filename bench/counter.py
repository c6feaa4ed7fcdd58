"""How every engine's no-op task says it ran: one INCR on a Redis key."""

from __future__ import annotations

import os

import redis

KEY = "bench:done"
_client: redis.Redis | None = None


def count_done() -> None:
    """One INCR per task, the same in every engine: how completion is observed."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    _client.incr(KEY)
