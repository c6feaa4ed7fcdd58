"""The Dramatiq peer: a no-op actor on a Redis broker."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.counter import count_done

dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_DRAMATIQ_URL"]))


@dramatiq.actor(max_retries=0)
def noop() -> None:
    count_done()
