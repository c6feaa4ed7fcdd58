"""Workers that heal each other: every worker stands ready to sweep, one at a time sweeps.

Crash recovery must not depend on remembering to start ``jobline sweep``, so
each ``jobline worker`` runs the sweeper's pass in its main process, off the
pool: two threads, one keeping a lease in Redis, one sweeping while that lease
is held. The lease is a key set with NX and a time to live of two thirds of a
sweep interval, renewed three times that long by its holder only (a small Lua
check-and-set), so when the holder dies another worker takes over within a sweep
interval, and a holder that stops cleanly hands it over at once. Two sweepers
at once (a lapse, or ``jobline sweep`` beside the workers) are safe: every
change a pass makes is a conditional update.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

import redis
from celery import bootsteps

from jobline.engine import sweeper
from jobline.engine.pipeline import Pipeline
from jobline.engine.runtime import Runtime
from jobline.store.jobs import JobStore

log = logging.getLogger(__name__)

LEASE_KEY = "jobline:sweeper:lease"

# Renew only what is still ours, in one step, so a lapsed holder cannot extend
# the lease a successor has taken since.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SweeperLease:
    """The right to sweep, held by one process at a time for ``ttl`` seconds unless renewed."""

    def __init__(self, client: redis.Redis, ttl: float, holder: str | None = None) -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl * 1000))
        # Says who sweeps, for operators and tests reading the key.
        self.token = f"{holder or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.held = False

    def hold(self) -> bool:
        """Renew the lease if it is ours, or take it if it is free; whether we hold it now."""
        if self.held and self._renew(keys=[LEASE_KEY], args=[self.token, self.ttl_ms]):
            return True
        self.held = bool(self.client.set(LEASE_KEY, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def release(self) -> None:
        """Give the lease up now, if it is ours, so another worker need not wait it out."""
        if self.held:
            self._release(keys=[LEASE_KEY], args=[self.token])
            self.held = False


class Healer:
    """Keeps (or waits for) the sweeper lease, and sweeps every interval while it holds it."""

    def __init__(self, pipeline: Pipeline, holder: str | None = None) -> None:
        self.pipeline = pipeline
        self.interval = pipeline.settings.sweep_interval_seconds
        client = redis.Redis.from_url(
            pipeline.settings.redis_url, socket_timeout=5, socket_connect_timeout=5
        )
        self.lease = SweeperLease(client, ttl=self.interval * 2 / 3, holder=holder)
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._keep, name="jobline-sweeper-lease", daemon=True),
            threading.Thread(target=self._sweep, name="jobline-sweeper", daemon=True),
        ]

    def start(self) -> Healer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sweeping, wait for a pass under way, and hand the lease over."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        try:
            self.lease.release()
        except redis.RedisError:
            log.warning("could not release the sweeper lease; it lapses by itself")

    def _keep(self) -> None:
        # A third of the lease's life between tries: a holder renews twice before
        # it lapses, and a waiting worker notices a lapse within that third.
        every = self.lease.ttl_ms / 3000
        while not self._stop.is_set():
            try:
                leading = self.lease.hold()
            except redis.RedisError as exc:
                log.warning("sweeper lease unreachable: %s", exc)
                self.lease.held = leading = False
            if leading and not self.leading.is_set():
                log.info("this worker now sweeps (%s)", self.lease.token)
            if leading:
                self.leading.set()
            else:
                self.leading.clear()
            self._stop.wait(every)

    def _sweep(self) -> None:
        while not self._stop.is_set():
            if self.leading.is_set():
                sweeper.sweep_safely(self.pipeline)
                self._stop.wait(self.interval)
            else:
                self.leading.wait(min(self.interval, 1.0))


def healing_step(runtime: Runtime) -> type[bootsteps.StartStopStep]:
    """A Celery worker bootstep running a Healer in the worker's main process."""

    class Healing(bootsteps.StartStopStep):  # type: ignore[misc]
        """Sweeps from the worker's main process, after the pool has forked its children."""

        requires = {"celery.worker.components:Pool"}
        healer: Healer | None = None

        def start(self, worker: Any) -> None:
            store = JobStore(runtime.settings)
            pipeline = Pipeline(runtime.settings, store, worker.app, runtime.catalogue)
            self.healer = Healer(pipeline, holder=getattr(worker, "hostname", None)).start()

        def stop(self, worker: Any) -> None:
            if self.healer is not None:
                self.healer.stop()
                self.healer.pipeline.store.close()
                self.healer = None

    return Healing
