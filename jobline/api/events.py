"""Live job changes as Server-Sent Events, fed by Redis pub/sub.

``GET /jobs/<id>/events`` sends the job as MongoDB has it, then each change
until the job ends, and closes. Events are best effort (a publisher that
cannot reach Redis drops them), so a job's stream that has been silent for
``RECHECK_SECONDS`` reads the job once: a change whose event was lost, its end
above all, still arrives within those seconds, not at the stream's end.
``GET /events`` sends changes to every job the caller may see, with no
replay: a client that (re)connects loads the current list first, then follows
the stream. Each open stream holds one API thread, so a stream lasts at most
``JOBLINE_STREAM_MAX_SECONDS`` and then ends; clients reconnect (EventSource
does so by itself after the ``retry:`` delay). An API process told to stop
(``end_streams``) ends its streams within ``ENDING_CHECK_SECONDS``, so that it
stops at once however many boards are open, not after its graceful timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis
from flask import Response, stream_with_context
from flask_restx import Namespace, Resource

from jobline.api import access, auth
from jobline.api.services import pipeline
from jobline.core.errors import JobNotFound, Unavailable
from jobline.core.settings import Settings
from jobline.engine import events
from jobline.store.views import job_view

# Mounted at the API root: its routes sit beside the jobs they describe.
ns = Namespace("events", description="Live job status and progress (Server-Sent Events)", path="/")

# A comment this often keeps proxies from closing an idle stream and lets the
# server notice a client that went away.
KEEPALIVE_SECONDS = 15.0
# A job's stream silent this long reads the job (one find by _id), in case an event was lost.
RECHECK_SECONDS = 5.0
RECONNECT_MS = 1000
# Fields that exist for routing messages, not for clients.
PRIVATE_FIELDS = ("owner",)
# How often a waiting stream looks whether its process is stopping.
ENDING_CHECK_SECONDS = 0.5

_ending = threading.Event()


def end_streams() -> None:
    """End every open stream of this process cleanly: it is stopping (safe in a signal handler)."""
    _ending.set()


class EventsUnavailable(Unavailable):
    """Redis pub/sub cannot be reached."""

    title = "Live events unavailable"


def can_see(change: Mapping[str, Any]) -> bool:
    """Whether the caller may see the job a change message is about (it carries ``owner``).

    The one check the all-jobs stream applies; a job's own stream finds its job
    through ``access.get`` like every other endpoint. The stream runs inside its
    request's context, so the caller's scope is the one the request was authorised with.
    """
    scope = auth.scope()
    return scope is None or change.get("owner") == scope


_clients: dict[tuple[int, str], redis.Redis] = {}
_clients_lock = threading.Lock()


def _redis(settings: Settings) -> redis.Redis:
    """One connection pool per process for subscriptions (each stream holds one connection)."""
    key = (os.getpid(), settings.redis_url)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = redis.Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=settings.connect_timeout_seconds,
                socket_timeout=KEEPALIVE_SECONDS * 2,
                health_check_interval=0,
            )
        return _clients[key]


class Subscription:
    """Pub/sub channels, subscribed (and confirmed by Redis) before anything is read.

    Publishers skip changes while nobody listens, and trust their count of
    listeners for ``events.LISTENERS_TTL``: the subscription is ready once that
    has passed since it was confirmed, so every change from then on is
    published (engine.events). ``ready()`` waits for that moment.
    """

    def __init__(self, settings: Settings, *channels: str) -> None:
        self.pubsub = _redis(settings).pubsub()
        try:
            self.pubsub.subscribe(*channels, events.LISTENING_CHANNEL)
            self._confirm(len(channels) + 1, settings.connect_timeout_seconds)
        except (redis.RedisError, OSError) as exc:
            self.close()
            raise EventsUnavailable(f"Redis unreachable: {type(exc).__name__}") from exc
        self._ready_at = time.monotonic() + events.LISTENERS_TTL

    def ready(self) -> Subscription:
        """Wait until every change published from now on reaches this subscription."""
        time.sleep(max(0.0, self._ready_at - time.monotonic()))
        return self

    def _confirm(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while count:
            left = deadline - time.monotonic()
            reply = self.pubsub.get_message(timeout=max(left, 0.0)) if left > 0 else None
            if reply is None:
                raise redis.TimeoutError("no subscription confirmation")
            if reply["type"] == "subscribe":
                count -= 1

    def changes(
        self, until: float, silence: float = KEEPALIVE_SECONDS
    ) -> Iterator[dict[str, Any] | None]:
        """Each change published until ``until`` (monotonic), and None after ``silence`` without.

        Ends early, as at ``until``, once the process is stopping (``end_streams``).
        """
        quiet_until = time.monotonic() + silence
        while not _ending.is_set() and (left := until - time.monotonic()) > 0:
            wait = min(left, quiet_until - time.monotonic(), ENDING_CHECK_SECONDS)
            try:
                reply = self.pubsub.get_message(timeout=max(wait, 0.0))
            except (redis.RedisError, OSError):
                return  # the client reconnects and starts from the current state
            if reply is None:
                if time.monotonic() >= quiet_until:
                    quiet_until = time.monotonic() + silence
                    yield None
                continue
            quiet_until = time.monotonic() + silence
            if reply["type"] == "message":
                try:
                    yield json.loads(reply["data"])
                except ValueError:
                    continue

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self.pubsub.close()


def sse(data: Mapping[str, Any], event: str = "job") -> str:
    """One event in the text/event-stream format."""
    public = {k: v for k, v in data.items() if k not in PRIVATE_FIELDS}
    return f"event: {event}\ndata: {json.dumps(public, separators=(',', ':'))}\n\n"


def _respond(body: Iterator[str]) -> Response:
    response = Response(stream_with_context(body), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


def _is_newer(change: Mapping[str, Any], last: Mapping[str, Any]) -> bool:
    """False for a change the client has already seen, or one a later state superseded."""
    if events.version(change) < events.version(last):
        return False
    fields = ("status", "progress", "progress_message")
    return any(change.get(f) != last.get(f) for f in fields)


def job_stream(
    sub: Subscription,
    snapshot: dict[str, Any],
    lifetime: float,
    reread: Callable[[], dict[str, Any]],
) -> Iterator[str]:
    """The job as stored, then its changes in order, ending at its terminal state.

    ``reread()`` is the job as stored now (JobNotFound once it is deleted): what a
    silent stream looks at, so that a lost event delays a change by seconds only.
    """
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        yield sse(snapshot)
        last: Mapping[str, Any] = snapshot
        if last["status"] in events.TERMINAL:
            return
        for change in sub.changes(time.monotonic() + lifetime, silence=RECHECK_SECONDS):
            if change is None:
                try:
                    change = reread()
                except JobNotFound:
                    return  # deleted: nothing more will happen to it
                except Unavailable:
                    change = {}  # the store is away for now; the next silence looks again
                if not change or not _is_newer(change, last):
                    yield ": keep-alive\n\n"
                    continue
            if change.get("event") == "log":
                yield sse({"items": change.get("items") or []}, event="log")
            elif _is_newer(change, last):
                yield sse(change)
                last = change
                if change["status"] in events.TERMINAL:
                    return
    finally:
        sub.close()


def all_jobs_stream(sub: Subscription, lifetime: float) -> Iterator[str]:
    """Changes to every visible job, until the stream's lifetime is up."""
    try:
        yield f"retry: {RECONNECT_MS}\n\n: connected\n\n"
        for change in sub.changes(time.monotonic() + lifetime):
            if change is None:
                yield ": keep-alive\n\n"
            elif can_see(change):
                yield sse(change)
    finally:
        sub.close()


@ns.route("/jobs/<string:job_id>/events")
@ns.response(404, "No such job")
@ns.response(503, "Redis is unavailable")
class JobEvents(Resource):
    @ns.doc("job_events")
    @ns.produces(["text/event-stream"])
    @ns.response(200, "text/event-stream of `job` events")
    def get(self, job_id: str) -> Response:
        """Stream a job's status and progress until it ends.

        The first event is the whole job as stored; each later `job` event carries
        the fields that changed (`status`, `progress`, `progress_message`,
        `attempts`, and `result` or `error` at the end). `log` events carry
        `{"items": [...]}`, the job's log lines as they are stored (the lines of
        `GET /jobs/<id>/logs`). The stream closes after
        the terminal state, when the job is deleted, or after
        `JOBLINE_STREAM_MAX_SECONDS`: reconnect to get the current state again.
        Silent for 5 s, it reads the job, so a change whose event was lost
        still arrives.
        """
        p = pipeline()
        # Subscribe first, then read: a change between the two is not lost. An
        # unknown or finished job is answered at once; a live one is read again
        # once the subscription is ready, so its changes from then on all arrive.
        sub = Subscription(p.settings, events.job_channel(job_id))
        try:
            job = access.get(job_id)  # the API's one rule for which jobs a caller sees
            if job["status"] not in events.TERMINAL:
                sub.ready()
                job = access.get(job_id)
        except BaseException:
            sub.close()
            raise
        return _respond(
            job_stream(
                sub,
                job_view(job),
                p.settings.stream_max_seconds,
                lambda: job_view(access.get(job_id)),
            )
        )


@ns.route("/events")
@ns.response(503, "Redis is unavailable")
class AllEvents(Resource):
    @ns.doc("events")
    @ns.produces(["text/event-stream"])
    @ns.response(200, "text/event-stream of `job` change events")
    def get(self) -> Response:
        """Stream changes to all jobs you can see (no replay: load the list, then follow).

        Each `job` event carries `id`, `type`, `status`, `attempts`, `progress`,
        `progress_message` and, at the end, `result` or `error`. The stream ends
        after `JOBLINE_STREAM_MAX_SECONDS`; EventSource reconnects by itself.
        """
        p = pipeline()
        sub = Subscription(p.settings, events.GLOBAL_CHANNEL).ready()
        return _respond(all_jobs_stream(sub, p.settings.stream_max_seconds))
