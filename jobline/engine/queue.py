"""The Celery app, built from settings, and publishing a job's message to the broker.

The message carries the job id; a queued job's message also carries the record
as it was published, so that the worker claims it without reading it back. The
record in MongoDB stays the job: the claim is conditional on the status and
attempt the message carries, and any other case reads the record.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from functools import partial
from typing import Any

from amqp.exceptions import ChannelError
from celery import Celery
from kombu import Producer
from kombu.exceptions import KombuError, OperationalError
from kombu.transport.redis import PRIORITY_STEPS as REDIS_PRIORITY_STEPS

from jobline.core.combining import Combiner
from jobline.core.errors import BrokerUnavailable
from jobline.core.settings import Settings
from jobline.engine.task_events import TimedFlushEvents
from jobline.jobs import JobType
from jobline.store.records import Job, Status

log = logging.getLogger(__name__)

RUN_TASK = "jobline.run"
DEFAULT_QUEUE = "default"
# Longer than any job's hard time limit, so Redis does not hand a running job's
# message to a second worker; lost workers are found sooner by their lease.
VISIBILITY_TIMEOUT = 6 * 3600
# Messages a batch publish sends in one round trip; a refusal loses no more.
PUBLISH_CHUNK = 100
# Job priorities 0-9, 0 first. RabbitMQ runs the highest number first, so
# publish() turns a job's priority around on AMQP brokers.
MAX_PRIORITY = 9
# A job submitted without a priority: more urgent ones can still overtake it.
DEFAULT_PRIORITY = 5
# Celery's Redis transport keeps a queue's messages in one list per step and reads
# the lowest step first. jobline keeps Celery's own steps, so that every Celery
# tool (a Flower given only --broker, `celery purge`) sees every message: each
# priority goes to the first step at or after it (0; 1-3; 4-6; 7-9), so 0 still
# runs before any other.
PRIORITY_STEPS = REDIS_PRIORITY_STEPS
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_amqp(broker_url: str) -> bool:
    """Whether the broker is RabbitMQ (or another AMQP 0-9-1 server) rather than Redis."""
    return broker_url.split("://", 1)[0].lower() in AMQP_SCHEMES


def _broker_options(settings: Settings, answers_clients: bool) -> dict[str, Any]:
    """Transport settings that differ between Redis and RabbitMQ."""
    timeout = settings.connect_timeout_seconds
    # A Redis that stops answering leaves a command waiting out the socket timeout,
    # once a try. The API waits no longer than its connect timeout, as it promises;
    # workers wait longer, as Redis may pause writes while its disk is slow to sync.
    command_timeout = timeout if answers_clients else max(timeout, 5.0)
    if is_amqp(settings.broker):
        return {
            # RabbitMQ needs x-max-priority on a queue for priorities to count;
            # Celery declares every queue it creates with it.
            "task_queue_max_priority": MAX_PRIORITY,
            "broker_connection_timeout": timeout,
            # A submission is acknowledged only once RabbitMQ has the message.
            "broker_transport_options": {"confirm_publish": True},
        }
    # Everything else is Celery's default, so that Celery's own tools (the plain
    # `celery --broker URL inspect ping`, a Flower of its own) reach the workers:
    # another key separator ("sep") makes remote-control replies and task events
    # unroutable between the two sides.
    return {
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_timeout": command_timeout,
            "socket_connect_timeout": timeout,
        },
    }


def make_celery(settings: Settings, *, answers_clients: bool = False) -> Celery:
    """A Celery app on the configured broker; JSON only, results kept in MongoDB.

    ``answers_clients``: the API's, which answers 503 within the connect timeout
    (a try and a retry of it, with the reconnect about three) when the broker
    does not answer.
    """
    app = Celery("jobline", broker=settings.broker, set_as_current=False, events=TimedFlushEvents)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        enable_utc=True,
        timezone="UTC",
        task_default_queue=DEFAULT_QUEUE,
        # Crash safety: a message is acknowledged only once its job has ended,
        # and handed back when the process running it dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Jobs are slow: a worker reserves no more than it is running.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        **_broker_options(settings, answers_clients),
        # Fail a submission quickly when the broker is down, so the API can
        # answer 503 instead of hanging: one more try rides out a reconnect.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Task events cost every job broker publishes, so workers send them only
        # while someone watches: Flower asks workers to (enable_events) every few
        # seconds while it runs, and shows tasks from the worker's receipt on.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    return app


def publish(app: Celery, job: Job, job_type: JobType, countdown: float | None = None) -> None:
    """Send the message that makes a worker run ``job``; BrokerUnavailable if it cannot.

    Messages this process's threads publish at the same time share one round
    trip (core.combining): a lone one goes at once, those sent meanwhile with
    the next batch. Each caller returns once its own message is sent.
    """
    if countdown is not None:
        _send_one(app, job, job_type, countdown)
    else:
        _publishes(app).submit((job, job_type))


def _send_one(app: Celery, job: Job, job_type: JobType, countdown: float | None = None) -> None:
    try:
        _send(app, job, job_type, countdown)
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable: {type(exc).__name__}") from exc


_combiners: weakref.WeakKeyDictionary[Celery, tuple[int, Combiner[tuple[Job, JobType]]]] = (
    weakref.WeakKeyDictionary()
)
_combiners_lock = threading.Lock()


def _publishes(app: Celery) -> Combiner[tuple[Job, JobType]]:
    """This process's combiner of ``app``'s publishes (a forked child makes its own)."""
    pid = os.getpid()
    with _combiners_lock:
        found = _combiners.get(app)
        if found is None or found[0] != pid:
            # A proxy: the combiner, a value of the map, must not keep its key alive.
            call = partial(_publish_batch, weakref.proxy(app))
            found = _combiners[app] = (pid, Combiner(call, PUBLISH_CHUNK))
    return found[1]


def _publish_batch(app: Celery, jobs: Sequence[tuple[Job, JobType]]) -> list[BaseException | None]:
    """Each job's message: a lone one as ever, several in one round trip.

    Raises BrokerUnavailable when the broker took none of them (a failure of
    the whole call, see core.combining).
    """
    if len(jobs) == 1:
        _send_one(app, *jobs[0])
        return [None]
    sent, error = publish_many(app, jobs)
    if error is not None and sent == 0:
        raise error
    # Each caller raises an error of its own.
    return [None] * sent + [BrokerUnavailable(str(error)) for _ in jobs[sent:]]


def publish_many(
    app: Celery, jobs: Sequence[tuple[Job, JobType]]
) -> tuple[int, BrokerUnavailable | None]:
    """Send many jobs' messages in order, PUBLISH_CHUNK to a round trip on Redis.

    Returns how many were sent, and why the rest were not (None: all were).
    A chunk the broker refuses is not counted as sent, though part of it may
    have arrived: a worker drops a message whose job is no longer stored.
    """
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            # Redis errors surface when a batch is flushed, outside Celery's wrapping.
            errors = producer.connection.connection_errors + producer.connection.channel_errors
            try:
                for start in range(0, len(jobs), PUBLISH_CHUNK):
                    chunk = jobs[start : start + PUBLISH_CHUNK]
                    with producer.batch():
                        for job, job_type in chunk:
                            _send(app, job, job_type, producer=producer)
                    sent += len(chunk)
            except errors as exc:
                raise OperationalError(str(exc)) from exc
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        return sent, BrokerUnavailable(f"broker unreachable: {type(exc).__name__}")
    return sent, None


def _send(
    app: Celery,
    job: Job,
    job_type: JobType,
    countdown: float | None = None,
    producer: Producer | None = None,
) -> None:
    options: dict[str, Any] = {
        "task_id": job["task_id"],
        "queue": job.get("queue") or job_type.queue,
        "soft_time_limit": job_type.soft_time_limit,
        "time_limit": job_type.time_limit,
        "priority": broker_priority(app, job.get("priority")),
        "producer": producer,
    }
    if countdown is not None:
        options["countdown"] = countdown
    elif job.get("run_at") is not None:
        options["eta"] = job["run_at"]
    args = [job["_id"]]
    kwargs = {"record": job} if job.get("status") == Status.QUEUED else None
    # Celery would otherwise repr the whole record into the message's headers
    # for monitors (a tenth of a submission's CPU, measured); they show this.
    reprs = {"argsrepr": repr(args), "kwargsrepr": "{'record': {...}}" if kwargs else "{}"}
    app.send_task(RUN_TASK, args=args, kwargs=kwargs, **options, **reprs)


def broker_priority(app: Celery, priority: int | None) -> int:
    """The broker's number for a job priority (0 runs first, as on Redis)."""
    priority = DEFAULT_PRIORITY if priority is None else min(max(int(priority), 0), MAX_PRIORITY)
    if is_amqp(app.conf.broker_url):
        return MAX_PRIORITY - priority
    return redis_step(priority)


def redis_step(priority: int) -> int:
    """The Redis transport's list for a job priority: the first step at or after it."""
    return next(step for step in PRIORITY_STEPS if step >= priority)


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` at every priority (not those a worker has reserved)."""
    try:
        with app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError as exc:
        # Redis drops an emptied queue's key and RabbitMQ may not have declared
        # the queue yet: either way, nothing is waiting in it.
        if str(getattr(exc, "reply_code", "")) == "404":
            return 0
        raise BrokerUnavailable(f"broker refused: {exc}") from exc
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable: {type(exc).__name__}") from exc


def ping_broker(app: Celery) -> None:
    """Raise BrokerUnavailable unless the broker accepts a connection."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable: {type(exc).__name__}") from exc


def ping_workers(app: Celery, timeout: float = 1.0) -> int:
    """How many workers answered a ping (stops at the first); BrokerUnavailable if none could."""
    try:
        return len(app.control.ping(timeout=timeout, limit=1))
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable: {type(exc).__name__}") from exc


def revoke(app: Celery, task_id: str) -> None:
    """Ask workers to stop the task now; best effort, the store already says cancelled.

    Celery's broadcast retries forever while the broker is down, so it is sent
    only to a broker that answers; if the broadcast is lost, the job's heartbeat
    still finds the job cancelled and stops it.
    """
    try:
        ping_broker(app)
        app.control.revoke(task_id, terminate=True, signal="SIGTERM")
    except (BrokerUnavailable, OperationalError, KombuError, ConnectionError, OSError) as exc:
        log.warning("could not broadcast revoke of %s: %s", task_id, exc)
