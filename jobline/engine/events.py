"""Job changes published on Redis pub/sub, for live views (SSE, the dashboard).

Every status transition and every (throttled) progress write is published as a
small JSON message on the job's own channel and on one global channel, while
someone listens. The MongoDB record stays the truth: a message is a hint that
it changed, so publishing is best effort. It never raises, waits at most a
fraction of a second, and after a failure stays quiet for a while instead of
slowing every transition of a broken deployment.

Nobody listening is the common case of a busy pipeline (no board open), and a
publish there is a round trip for nothing. So a publisher asks Redis how many
subscribe (``PUBSUB NUMSUB``) at most once per ``LISTENERS_TTL``, and a stream
waits that long after subscribing before it reads anything (api.events): by
then every publisher has asked again and sees it, so no change is missed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import redis

from jobline.core.settings import Settings

log = logging.getLogger(__name__)

GLOBAL_CHANNEL = "jobline:jobs"
JOB_CHANNEL_PREFIX = "jobline:job:"
# A publish is one round trip to a nearby Redis; anything slower is a fault.
PUBLISH_TIMEOUT = 0.25
# After a failed publish, skip publishing for this long rather than pay the timeout again.
QUIET_AFTER_FAILURE = 5.0
# Every live view subscribes to this channel too (nothing is published on it):
# its subscriber count, with the global channel's, says whether anyone listens.
LISTENING_CHANNEL = "jobline:listening"
# How long a publisher trusts its last count of listeners.
LISTENERS_TTL = 0.5

WAITING = frozenset({"queued", "scheduled", "retrying"})
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def job_channel(job_id: str) -> str:
    return f"{JOB_CHANNEL_PREFIX}{job_id}"


def message(job: Mapping[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """The message for a change of ``job`` (a record or a job view) to ``status``."""
    body: dict[str, Any] = {
        "id": job.get("_id") or job.get("id"),
        "type": job.get("type"),
        "status": status,
        "attempts": job.get("attempts", 0),
        "progress": job.get("progress", 0.0),
        "progress_message": job.get("progress_message"),
    }
    if job.get("owner") is not None:
        body["owner"] = job["owner"]
    if job.get("workflow_id") is not None:  # so a view of the workflow knows to look again
        body["workflow_id"] = job["workflow_id"]
    body.update(fields)
    if status == "succeeded":
        body["progress"] = 1.0
    body["at"] = time.time()
    return body


def version(change: Mapping[str, Any]) -> tuple[int, int, float]:
    """Orders the states of one job between a submission (or retry) and its end.

    A waiting job waits for attempt ``attempts + 1``; a running one is in attempt
    ``attempts``; a finished one is past both (it may have been cancelled while
    waiting). So a stale message (a progress write published after a cancel, a
    transition buffered before a snapshot) sorts before the state that
    superseded it.
    """
    status = str(change.get("status"))
    attempts = int(change.get("attempts") or 0)
    if status in WAITING:
        return (attempts + 1, 0, 0.0)
    if status in TERMINAL:
        return (attempts + 1, 2, 0.0)
    return (attempts, 1, float(change.get("progress") or 0.0))


class Publisher:
    """Publishes job changes over one Redis connection pool, made in the process that uses it."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._client: redis.Redis | None = None
        self._pid = 0
        self._quiet_until = 0.0
        self._lock = threading.Lock()
        self._listened = False
        self._listeners_known_until = 0.0

    @property
    def client(self) -> redis.Redis:
        # A pool must not cross a fork (Celery's prefork pool, gunicorn's workers).
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = redis.Redis.from_url(
                    self.redis_url,
                    socket_timeout=PUBLISH_TIMEOUT,
                    socket_connect_timeout=PUBLISH_TIMEOUT,
                    retry_on_timeout=False,
                    health_check_interval=0,
                )
                self._pid = os.getpid()
            return self._client

    def _listened_to(self) -> bool:
        """Whether a live view listens, as Redis said at most LISTENERS_TTL ago."""
        asked = time.monotonic()
        if asked >= self._listeners_known_until:
            counts: list[tuple[bytes, int]] = self.client.pubsub_numsub(  # type: ignore[assignment]
                GLOBAL_CHANNEL, LISTENING_CHANNEL
            )
            # Valid from before the question: a view that subscribed after Redis
            # answered is seen within LISTENERS_TTL of its subscription.
            self._listened = any(count for _, count in counts)
            self._listeners_known_until = asked + LISTENERS_TTL
        return self._listened

    def publish_to_job(self, body: Mapping[str, Any]) -> bool:
        """Publish on the job's own channel only (log lines: too many for the global one)."""
        if time.monotonic() < self._quiet_until:
            return False
        try:
            if not self._listened_to():
                return False
            self.client.publish(job_channel(str(body["id"])), json.dumps(body, default=_default))
        except Exception as exc:  # best effort: the lines are stored, a follower reads them
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
            log.warning("could not publish job log lines (%s); pausing events", exc)
            return False
        return True

    def publish(self, *changes: Mapping[str, Any]) -> bool:
        """Publish changes on their jobs' channels and the global one, in one round trip.

        False if they were dropped, or nobody listens.
        """
        if time.monotonic() < self._quiet_until:
            return False
        try:
            if not self._listened_to():
                return False
            with self.client.pipeline(transaction=False) as pipe:
                for change in changes:
                    data = json.dumps(change, default=_default)
                    pipe.publish(job_channel(str(change["id"])), data)
                    pipe.publish(GLOBAL_CHANNEL, data)
                pipe.execute()
        except Exception as exc:  # best effort: a live view misses one change
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
            log.warning("could not publish a job change (%s); pausing events", exc)
            return False
        return True


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


_publishers: dict[str, Publisher] = {}
_publishers_lock = threading.Lock()


def publisher(settings: Settings) -> Publisher:
    """The process's publisher for the configured Redis."""
    with _publishers_lock:
        found = _publishers.get(settings.redis_url)
        if found is None:
            found = _publishers[settings.redis_url] = Publisher(settings.redis_url)
        return found


def job_changed(settings: Settings, job: Mapping[str, Any], status: str, **fields: Any) -> None:
    """Tell live views that ``job`` is now ``status``; never raises."""
    try:
        publisher(settings).publish(message(job, status, **fields))
    except Exception:  # pragma: no cover - message() on a malformed record
        log.warning("could not build a job change for %r", job.get("_id"), exc_info=True)


def job_log(settings: Settings, job: Mapping[str, Any], lines: list[dict[str, Any]]) -> None:
    """Tell the job's live views about log lines just stored; never raises."""
    body = {"id": job.get("_id"), "event": "log", "items": lines}
    publisher(settings).publish_to_job(body)


def jobs_submitted(settings: Settings, jobs: Iterable[Mapping[str, Any]]) -> None:
    """Tell live views about newly stored jobs (a batch), in one round trip; never raises."""
    try:
        publisher(settings).publish(*(message(job, job["status"]) for job in jobs))
    except Exception:  # pragma: no cover - a malformed record
        log.warning("could not build the changes of a batch", exc_info=True)
