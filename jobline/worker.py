"""The Celery task that runs any job, and the worker app that carries it.

The task claims the job in the store (a new attempt), runs the job type's
function while a heartbeat renews its lease, and records the outcome with a
conditional update. Celery's own task state is never consulted.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import Celery, Task
from celery.utils.time import get_exponential_backoff_interval

from jobline import events, jobs, schedules, webhooks
from jobline.errors import JobCancelled, UnknownJobType
from jobline.jobs import Catalogue, Context, JobType
from jobline.queue import RUN_TASK, make_celery
from jobline.settings import Settings
from jobline.store import JobStore, Status, now

log = logging.getLogger(__name__)

# Publishes a change of the running job to live views (events.job_changed, bound).
Notify = Callable[..., None]

# Progress is written at most this often; a tight loop must not hammer MongoDB.
PROGRESS_INTERVAL = 0.5


@dataclass
class Runtime:
    """What the task needs in each worker process; connections made after fork."""

    settings: Settings
    catalogue: Catalogue
    _store: JobStore | None = None
    _pid: int = 0

    @property
    def store(self) -> JobStore:
        # pymongo clients must not cross a fork: one per process.
        if self._store is None or self._pid != os.getpid():
            self._store = JobStore(self.settings)
            self._pid = os.getpid()
        return self._store


def error_info(exc: BaseException, reason: str = "error") -> dict[str, Any]:
    """What the job record keeps of a failure: type, message and a short traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-5)
    return {
        "reason": reason,
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback": "".join(tb)[-4000:],
    }


@dataclass
class Heartbeat:
    """Renews a running attempt's lease and writes its progress, throttled.

    Notices when the attempt no longer owns the job (it was cancelled, or the
    sweeper handed it on) and makes the next progress report raise JobCancelled.
    """

    store: JobStore
    job_id: str
    attempt: int
    interval: float
    # Called after each progress write this attempt still owns (live views).
    on_progress: Callable[[float, str | None], None] | None = None
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pending: tuple[float, str | None] | None = None
    _last_write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # The claim has just written the lease, so the first progress report waits
        # out the throttle too: a job shorter than PROGRESS_INTERVAL costs no
        # MongoDB write beyond its claim and its result.
        self._last_write = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="jobline-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def report(self, fraction: float, message: str | None = None) -> None:
        if self.lost.is_set():
            raise JobCancelled(self.job_id)
        with self._lock:
            self._pending = (fraction, message)
            due = time.monotonic() - self._last_write >= PROGRESS_INTERVAL
        if due:
            self._write()
        if self.lost.is_set():
            raise JobCancelled(self.job_id)

    def _write(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            self._last_write = time.monotonic()
        fraction, message = pending if pending else (None, None)
        try:
            owned = self.store.heartbeat(self.job_id, self.attempt, fraction, message)
        except Exception:  # a missed beat is retried; the lease has slack
            log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)
            return
        if not owned:
            self.lost.set()
        elif fraction is not None and self.on_progress is not None:
            self.on_progress(fraction, message)

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval, PROGRESS_INTERVAL * 2)):
            with self._lock:
                idle = time.monotonic() - self._last_write
                dirty = self._pending is not None
            if idle >= self.interval or (dirty and idle >= PROGRESS_INTERVAL):
                self._write()


def retry_delay(policy: jobs.RetryPolicy, attempt: int) -> float:
    """Exponential backoff with full jitter, as Celery's autoretry computes it."""
    return float(
        get_exponential_backoff_interval(
            factor=policy.backoff_seconds,
            retries=attempt - 1,
            maximum=policy.backoff_max_seconds,
            full_jitter=policy.jitter,
        )
    ) or random.uniform(0, policy.backoff_seconds)


class JobTask(Task):  # type: ignore[misc]
    """Celery task class whose hard-time-limit hook records the timeout."""

    runtime: Runtime

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # type: ignore[no-untyped-def]
        # Runs in the worker's main process when the hard limit killed the job.
        if isinstance(exc, TimeLimitExceeded) and args:
            store = self.runtime.store
            error = error_info(exc, reason="timeout")
            if store.fail(args[0], None, error):
                events.job_changed(self.runtime.settings, store.get(args[0]), "failed", error=error)
                webhooks.after_run(self.app, store, args[0], Status.FAILED)


def run_job(task: JobTask, runtime: Runtime, job_id: str) -> str:
    """Claim the job, run it, and record how it ended; returns the status it reached."""
    store = runtime.store
    job = store.claim(job_id, task_id=task.request.id)
    if job is None:
        return _not_claimed(task, store, job_id)
    attempt = job["attempts"]
    notify = functools.partial(events.job_changed, runtime.settings, job)
    notify("running")
    try:
        job_type = runtime.catalogue.get(job["type"])
    except UnknownJobType as exc:
        _fail(store, notify, job_id, attempt, error_info(exc, reason="unknown_type"))
        return str(Status.FAILED)
    beat = Heartbeat(
        store,
        job_id,
        attempt,
        interval=runtime.settings.lease_seconds / 3,
        on_progress=lambda fraction, message: notify(
            "running", progress=fraction, progress_message=message
        ),
    ).start()
    ctx = Context(job_id=job_id, attempt=attempt, settings=runtime.settings, report=beat.report)
    try:
        result = job_type.run(ctx, job["params"])
    except JobCancelled:
        return str(Status.CANCELLED)
    except SoftTimeLimitExceeded as exc:
        _fail(store, notify, job_id, attempt, error_info(exc, reason="timeout"))
        return str(Status.FAILED)
    except Exception as exc:
        return _failed(task, store, notify, job_type, job_id, attempt, exc)
    finally:
        beat.stop()
    if store.succeed(job_id, attempt, result):
        notify("succeeded", result=result, error=None)
    return str(Status.SUCCEEDED)


def _fail(
    store: JobStore, notify: Notify, job_id: str, attempt: int | None, error: dict[str, Any]
) -> None:
    if store.fail(job_id, attempt, error):
        notify("failed", error=error)


def _failed(
    task: JobTask,
    store: JobStore,
    notify: Notify,
    job_type: JobType,
    job_id: str,
    attempt: int,
    exc: Exception,
) -> str:
    policy = job_type.retry
    if isinstance(exc, policy.retry_on) and attempt <= policy.max_retries:
        delay = retry_delay(policy, attempt)
        at = now() + timedelta(seconds=delay)
        error = error_info(exc, reason="retrying")
        if store.retry_later(job_id, attempt, error, at):
            notify("retrying", error=error)
            # Celery's retry publishes the next attempt's message with a countdown.
            raise task.retry(countdown=delay, max_retries=None, exc=exc)
        return str(Status.CANCELLED)
    _fail(store, notify, job_id, attempt, error_info(exc))
    return str(Status.FAILED)


def _not_claimed(task: JobTask, store: JobStore, job_id: str) -> str:
    """A delivery that may not run the job: early, duplicate, or for a finished job."""
    try:
        job = store.get(job_id)
    except Exception:
        return "missing"
    run_at = job.get("run_at")
    if job["status"] in (Status.SCHEDULED, Status.RETRYING) and run_at and run_at > now():
        # Delivered before its time: put it back until then.
        raise task.retry(eta=run_at, max_retries=None)
    return f"skipped:{job['status']}"


def create_worker_app(settings: Settings) -> Celery:
    """The Celery app of a worker process, with the job task registered."""
    app = make_celery(settings)
    runtime = Runtime(settings, jobs.load(settings.job_module_list))
    JobTask.runtime = runtime

    @app.task(name=RUN_TASK, bind=True, base=JobTask, max_retries=None)
    def run(self: JobTask, job_id: str) -> str:
        status = run_job(self, runtime, job_id)
        webhooks.after_run(app, runtime.store, job_id, status)
        return status

    webhooks.register(app, runtime)
    schedules.register(app, runtime)
    return app
