"""The Celery task that runs any job, and the worker app that carries it.

The task claims the job in the store (a new attempt), runs the job type's
function while a heartbeat renews its lease, and records the outcome with a
conditional update. Celery's own task state is never consulted.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import Celery, Task, signals
from celery.worker.request import Request

from jobline import events, jobs, logs, metrics, schedules, webhooks
from jobline.errors import JobCancelled, JobNotFound, StoreUnavailable, UnknownJobType
from jobline.jobs import Catalogue, Context, JobType
from jobline.queue import RUN_TASK, make_celery
from jobline.settings import Settings
from jobline.store import Job, JobStore, Status, now

log = logging.getLogger(__name__)

# Progress is written at most this often; a tight loop must not hammer MongoDB.
PROGRESS_INTERVAL = 0.5
# A delivery that finds MongoDB down is put back for this long, not dropped.
STORE_DOWN_RETRY_SECONDS = 5.0
# The signal the heartbeat sends to a job that lost its job, to stop it where it stands.
STOP_SIGNAL = signal.SIGUSR2


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
    sweeper handed it on): the next progress report raises JobCancelled, and
    ``on_lost`` is called so that a job which never reports is stopped too.
    """

    store: JobStore
    job_id: str
    attempt: int
    interval: float
    on_lost: Callable[[], None] | None = None
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
        # The claim has just written the lease: a job that ends within the first
        # interval costs no write besides its outcome.
        self._last_write = time.monotonic()
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
            if self.lost.is_set() and self.on_lost is not None:
                self.on_lost()  # again each round, until the job gives way


class Interrupter:
    """Raises JobCancelled in the thread running a job, from the heartbeat's thread.

    A signal interrupts even a blocking call (a sleep, a socket read), where an
    exception set from another thread would wait for the call to return. Works
    when the job runs in a process's main thread, as in Celery's prefork pool;
    elsewhere the job only stops at its next progress report.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.armed = False
        self.usable = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> Interrupter:
        if self.usable:
            # Left installed afterwards: a late signal must find a handler, not kill the process.
            signal.signal(STOP_SIGNAL, self._handle)
        self.armed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False

    def fire(self) -> None:
        if self.armed and self.usable:
            signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)

    def _handle(self, signum: int, frame: object) -> None:
        if self.armed:
            raise JobCancelled(self.job_id)


def retry_delay(policy: jobs.RetryPolicy, attempt: int) -> float:
    """Seconds before the next try: exponential backoff, capped, with full jitter.

    Celery's autoretry does the same in whole seconds; jobs here may back off
    for less than one.
    """
    ceiling = min(policy.backoff_max_seconds, policy.backoff_seconds * 2 ** (attempt - 1))
    return random.uniform(0, ceiling) if policy.jitter else ceiling


class JobRequest(Request):  # type: ignore[misc]
    """A delivery as the worker's main process sees it; records hard time limits.

    The pool kills a job past its hard limit, so the job's own process cannot
    record the timeout: the main process does, for the delivery that timed out
    (its task id), once.
    """

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft or not self.args:
            return
        job_id = self.args[0]
        exc = TimeLimitExceeded(f"hard time limit of {timeout:g}s exceeded")
        try:
            failed = JobTask.runtime.store.fail(
                job_id, None, error_info(exc, reason="timeout"), task_id=self.id
            )
        except StoreUnavailable:
            log.warning("job %s timed out while MongoDB is down; the sweeper will see it", job_id)
            return
        if failed:
            job = JobTask.runtime.store.get(job_id)
            metrics.JOBS_FAILED.labels(job["type"]).inc()
            fields = {**logs.job_fields(job), "status": "failed", "duration": timeout}
            message = "job %s passed its hard time limit of %gs; failed"
            log.warning(message, job_id, timeout, extra=fields)
            announce(JobTask.runtime, job_id, Status.FAILED)
            webhooks.after_run(self.task.app, JobTask.runtime.store, job_id, Status.FAILED)


class JobTask(Task):  # type: ignore[misc]
    """Celery task class running every job; its requests record hard time limits."""

    Request = JobRequest
    runtime: Runtime


def run_job(task: JobTask, runtime: Runtime, job_id: str) -> str:
    """Claim the job, run it, and record how it ended; returns a line for the worker's log."""
    store = runtime.store
    try:
        job = store.claim(job_id, task_id=task.request.id)
    except StoreUnavailable:
        # Acknowledging now would drop a job nobody ran: send the message round again.
        raise task.retry(countdown=STORE_DOWN_RETRY_SECONDS, max_retries=None) from None
    if job is None:
        return f"job {job_id}: {_not_claimed(task, store, job_id)}"
    _observe_wait(job)
    return f"job {job_id} attempt {job['attempts']}: {_attempt(task, runtime, job)}"


def _observe_wait(job: Job) -> None:
    """Queue wait of a first attempt or a scheduled one; a retry's wait starts at its run_at."""
    due = job.get("run_at") or (job["created_at"] if job["attempts"] == 1 else None)
    if due is not None:
        waited = max(0.0, (job["started_at"] - due).total_seconds())
        metrics.QUEUE_WAIT.labels(job["type"], job.get("queue") or "default").observe(waited)
    log.info("job started", extra=logs.job_fields(job))


_COUNTERS = {
    "succeeded": metrics.JOBS_SUCCEEDED,
    "failed": metrics.JOBS_FAILED,
    "retrying": metrics.JOBS_RETRIED,
}


def _observe_end(job: Job, status: str) -> None:
    """Count and log how an attempt ended (cancellations are counted where they are asked)."""
    duration = max(0.0, (now() - job["started_at"]).total_seconds())
    metrics.JOB_DURATION.labels(job["type"], status).observe(duration)
    _COUNTERS[status].labels(job["type"]).inc()
    fields = {**logs.job_fields(job), "status": status, "duration": round(duration, 3)}
    log.info("job %s", status, extra=fields)


def _attempt(task: JobTask, runtime: Runtime, job: Job) -> str:
    """Run one claimed attempt while the heartbeat holds the lease; say how it ended."""
    store, job_id, attempt = runtime.store, job["_id"], job["attempts"]
    patience = runtime.settings.lease_seconds
    events.job_changed(runtime.settings, job, "running")
    try:
        job_type = runtime.catalogue.get(job["type"])
    except UnknownJobType as exc:
        error = error_info(exc, reason="unknown_type")
        recorded = persist(store.fail, patience, job_id, attempt, error)
        return _ended(task, store, job, recorded, "failed", error=error)
    interrupter = Interrupter(job_id)
    beat = Heartbeat(
        store,
        job_id,
        attempt,
        interval=runtime.settings.lease_seconds / 3,
        on_lost=interrupter.fire,
        on_progress=lambda fraction, message: events.job_changed(
            runtime.settings, job, "running", progress=fraction, progress_message=message
        ),
    ).start()
    ctx = Context(job_id=job_id, attempt=attempt, settings=runtime.settings, report=beat.report)
    try:
        with interrupter:
            result = job_type.run(ctx, job["params"])
    except JobCancelled:
        return "stopped: cancelled, or handed to another worker"
    except SoftTimeLimitExceeded as exc:
        error = error_info(exc, reason="timeout")
        recorded = persist(store.fail, patience, job_id, attempt, error)
        return _ended(task, store, job, recorded, "failed", "failed: timeout", error=error)
    except Exception as exc:
        return _failed(task, store, job_type, job, exc, patience)
    finally:
        beat.stop()
    recorded = persist(store.succeed, patience, job_id, attempt, result)
    return _ended(task, store, job, recorded, "succeeded", result=result)


def announce(runtime: Runtime, job_id: str, status: str) -> None:
    """Publish a recorded terminal state, with the result or error, to live views."""
    try:
        job = runtime.store.get(job_id)
    except Exception:  # best effort: the record is the truth, and it is written
        log.warning("could not read job %s to announce it", job_id, exc_info=True)
        return
    events.job_changed(
        runtime.settings, job, status, result=job.get("result"), error=job.get("error")
    )


def persist(write: Callable[..., bool], patience: float, *args: Any) -> bool:
    """A store write that waits out a MongoDB outage of up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return write(*args)
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise  # the lease runs out and the sweeper hands the job on
            time.sleep(1.0)


def _outcome(recorded: bool, what: str) -> str:
    return what if recorded else f"{what}, but not recorded: the job was cancelled or handed on"


def _ended(
    task: JobTask,
    store: JobStore,
    job: Job,
    recorded: bool,
    status: str,
    what: str = "",
    *,
    result: Any = None,
    error: dict[str, Any] | None = None,
) -> str:
    """An attempt's terminal write: once recorded, it is counted, live views hear, and the
    webhook goes out.

    Live views get the claimed record plus the ``result`` or ``error`` just
    written, so the hot path reads nothing back; only a job with a callback
    reads its final record, for the webhook's body.
    """
    if recorded:
        _observe_end(job, status)
        events.job_changed(task.runtime.settings, job, status, result=result, error=error)
        if job.get("callback_url"):
            webhooks.after_run(task.app, store, job["_id"], status)
    return _outcome(recorded, what or status)


def _failed(
    task: JobTask, store: JobStore, job_type: JobType, job: Job, exc: Exception, patience: float
) -> str:
    job_id, attempt, policy = job["_id"], job["attempts"], job_type.retry
    if isinstance(exc, policy.retry_on) and attempt <= policy.max_retries:
        delay = retry_delay(policy, attempt)
        at = now() + timedelta(seconds=delay)
        error = error_info(exc, reason="retrying")
        if not persist(store.retry_later, patience, job_id, attempt, error, at):
            return _outcome(False, "retrying")
        _observe_end(job, "retrying")
        events.job_changed(task.runtime.settings, job, "retrying", error=error)
        # Celery's retry publishes the next attempt's message with a countdown;
        # should that message be lost, the sweeper republishes the job after run_at.
        raise task.retry(countdown=delay, max_retries=None, exc=exc)
    error = error_info(exc)
    recorded = persist(store.fail, patience, job_id, attempt, error)
    return _ended(task, store, job, recorded, "failed", error=error)


def _not_claimed(task: JobTask, store: JobStore, job_id: str) -> str:
    """A delivery that may not run the job: early, duplicate, or for a finished job."""
    try:
        job = store.get(job_id)
    except JobNotFound:
        return "skipped: no such job"
    run_at = job.get("run_at")
    if job["status"] in (Status.SCHEDULED, Status.RETRYING) and run_at and run_at > now():
        # Delivered before its time: put it back until then.
        raise task.retry(eta=run_at, max_retries=None)
    return f"skipped: {job['status']}"


def create_worker_app(settings: Settings) -> Celery:
    """The Celery app of a worker process, with the job task registered."""
    app = make_celery(settings)
    runtime = Runtime(settings, jobs.load(settings.job_module_list))
    JobTask.runtime = runtime

    @signals.setup_logging.connect(weak=False)
    def _json_logs(loglevel: int | str | None = None, **_: Any) -> None:
        # Connected, this replaces Celery's own logging set-up with ours, at the
        # level the worker was started with (--loglevel).
        if isinstance(loglevel, int):
            loglevel = logging.getLevelName(loglevel)
        logs.configure(settings.model_copy(update={"log_level": loglevel or settings.log_level}))

    @app.task(name=RUN_TASK, bind=True, base=JobTask, max_retries=None)
    def run(self: JobTask, job_id: str) -> str:
        return run_job(self, runtime, job_id)

    webhooks.register(app, runtime)
    schedules.register(app, runtime)
    return app
