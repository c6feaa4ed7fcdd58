"""The Celery task that runs any job: claim, run while the heartbeat holds the lease, record.

The task claims the job in the store (a new attempt), runs the job type's
function while a heartbeat renews its lease, and records the outcome with a
conditional update. Celery's own task state is never consulted.

A pure job type's queued job starts before its claim is written: the
heartbeat writes the claim once the job has run for JOBLINE_CLAIM_DELAY_SECONDS
or needs the store to know sooner, and a job that ends first is recorded,
start and end, in one write. A short job then costs one update, not two; a
run whose job was cancelled or taken meanwhile has no effect to undo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import Task
from celery.worker.request import Request

from jobline.core import logs
from jobline.core.errors import (
    BadJobInput,
    JobCancelled,
    JobNotFound,
    StoreUnavailable,
    UnknownJobType,
)
from jobline.engine import events, joblog, limits, metrics, webhooks
from jobline.engine.failures import error_info, retry_delay
from jobline.engine.heartbeat import Heartbeat, Interrupter
from jobline.engine.jobfiles import JobFiles
from jobline.engine.runtime import Runtime
from jobline.engine.workflows.progress import Progression
from jobline.jobs import Context, JobType
from jobline.store.jobs import JobStore
from jobline.store.records import Job, Status, now

log = logging.getLogger(__name__)

# A delivery that finds MongoDB down is put back for this long, not dropped.
STORE_DOWN_RETRY_SECONDS = 5.0


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
            # The killed process could not give its slots back; the main process does.
            runtime = JobTask.runtime
            limits.Limits(runtime.settings, runtime.catalogue).give_back(self.task.app, job)
            metrics.JOBS_FAILED.labels(job["type"]).inc()
            fields = {**logs.job_fields(job), "status": "failed", "duration": timeout}
            message = "job %s passed its hard time limit of %gs; failed"
            log.warning(message, job_id, timeout, extra=fields)
            announce(JobTask.runtime, job_id, Status.FAILED)
            webhooks.after_run(self.task.app, JobTask.runtime.store, job_id, Status.FAILED)
            if job.get("workflow_id"):
                flow = progression(self.task.app, JobTask.runtime)
                flow.job_ended(job, Status.FAILED, error=job.get("error"))


class JobTask(Task):  # type: ignore[misc]
    """Celery task class running every job; its requests record hard time limits."""

    Request = JobRequest
    runtime: Runtime


def progression(app: Any, runtime: Runtime, *, inline: bool = False) -> Progression:
    """What moves a workflow on, for a step job's start and end (jobs outside one never ask)."""
    return Progression(runtime.settings, runtime.store, app, runtime.catalogue, inline)


def run_job(task: JobTask, runtime: Runtime, job_id: str, record: Job | None = None) -> str:
    """Claim the job, run it, and record how it ended; returns a line for the worker's log.

    ``record`` is the job as its message carries it, when it does (see queue.publish).
    """
    rules = limits.Limits(runtime.settings, runtime.catalogue)
    gate = limits.Gate(rules, task.app, task.request.id)
    try:
        return _claim_and_run(task, runtime, job_id, gate, record)
    finally:
        gate.release()  # however the attempt ended: the next waiting job gets the slot


def _claim_and_run(
    task: JobTask, runtime: Runtime, job_id: str, gate: limits.Gate, record: Job | None
) -> str:
    store = runtime.store
    later = _claims_later(runtime, gate, record)
    job: Job | None
    try:
        if record is not None and later:
            job = store.started({**record, "_id": job_id}, task.request.id)
        else:
            job = store.claim(job_id, task_id=task.request.id, admit=gate, record=record)
    except (StoreUnavailable, redis.RedisError):
        # Acknowledging now would drop a job nobody ran: send the message round again.
        raise task.retry(countdown=STORE_DOWN_RETRY_SECONDS, max_retries=None) from None
    except limits.Held as held:
        return f"job {job_id}: {_held(runtime, held)}"
    except limits.Redundant:
        return _ran_nothing(job_id, "skipped: another delivery of it has its place")
    if job is None:
        return _ran_nothing(job_id, _not_claimed(task, store, job_id, gate))
    _observe_wait(job)
    outcome = _attempt(task, runtime, job, gate, claimed=not later)
    if outcome not in _LOGGED_ENDS:  # stopped, or an end another delivery recorded
        log.info("job %s", outcome, extra=logs.job_fields(job))
    return f"job {job_id} attempt {job['attempts']}: {outcome}"


# What an attempt returns once its end is recorded, which _observe_end has logged.
_LOGGED_ENDS = frozenset({"succeeded", "failed", "failed: timeout"})


def _ran_nothing(job_id: str, why: str) -> str:
    """A delivery that ran nothing, in the worker's log (Celery's own line is left out)."""
    log.info("job delivery %s", why, extra={"job_id": job_id})
    return f"job {job_id}: {why}"


def _claims_later(runtime: Runtime, gate: limits.Gate, record: Job | None) -> bool:
    """Whether this delivery may run its job before the claim is written.

    Only a pure type's queued job as its message carries it, outside a workflow
    (whose steps move on at the start), with no files of an earlier attempt to
    clear, and under no limit (whose slots follow the claim).
    """
    if record is None or record.get("status") != Status.QUEUED:
        return False
    if runtime.settings.claim_delay_seconds <= 0:
        return False
    if record.get("workflow_id") or record.get("files") or record.get("held_reason"):
        return False
    if record.get("type") not in runtime.catalogue:
        return False
    return runtime.catalogue.get(record["type"]).pure and not gate.limits.of(record)


def _held(runtime: Runtime, held: limits.Held) -> str:
    """A delivery parked by a limit: the record says why, once per hold."""
    job = held.job
    if job.get("held_reason") != held.reason:
        try:
            runtime.store.note_held(job, held.reason)
        except StoreUnavailable:
            log.warning("could not note why job %s is held", job["_id"])
        events.job_changed(runtime.settings, job, job["status"], held_reason=held.reason)
        log.info("job held: %s", held.reason, extra=logs.job_fields(job))
    return f"held: {held.reason}"


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


def _attempt(
    task: JobTask, runtime: Runtime, job: Job, gate: limits.Gate, *, claimed: bool = True
) -> str:
    """Run one attempt while the heartbeat holds the lease; say how it ended.

    ``claimed`` False: a pure job's claim is not written yet (see the module's
    docstring); the heartbeat writes it, or the success does with its result.
    """
    store, job_id, attempt = runtime.store, job["_id"], job["attempts"]
    patience = runtime.settings.lease_seconds
    if claimed:
        events.job_changed(runtime.settings, job, "running")
    if job.get("workflow_id"):
        progression(task.app, runtime).job_started(job)
    try:
        job_type = runtime.catalogue.get(job["type"])
    except UnknownJobType as exc:
        error = error_info(exc, reason="unknown_type")
        recorded = persist(store.fail, patience, job_id, attempt, error)
        return _ended(task, store, job, recorded, "failed", error=error)
    interrupter = Interrupter(job_id)
    # Claimed well before its soft time limit: a job its hard limit kills is then
    # recorded failed (JobRequest.on_timeout) rather than left queued.
    delay = min(runtime.settings.claim_delay_seconds, job_type.soft_time_limit / 2)
    beat = _heartbeat(runtime, job, gate, interrupter, None if claimed else delay)
    # Whatever the store must see of an unclaimed attempt (a file, a log line) claims it first.
    before_write = None if claimed else beat.record_start
    try:
        files = JobFiles.for_attempt(runtime.settings, store.db, job, before_write)
        ctx = Context(
            job_id,
            attempt,
            runtime.settings,
            report=beat.report,
            files=files,
            inputs=job.get("step_inputs") or {},
        )
        # The log is stored before the outcome, so its lines reach live views first.
        with joblog.capture(runtime.settings, store.db, job, before_write), interrupter:
            result = job_type.run(ctx, job["params"])
    except JobCancelled:
        return "stopped: cancelled, or handed to another worker"
    except Exception as exc:
        # A failure, unlike a success, is recorded from a written claim.
        if not persist(beat.record_start, patience):
            return _outcome(False, "failed")
        return _failed(task, store, job_type, job, exc, patience)
    finally:
        beat.stop()
    if beat.finish_unstarted():
        recorded = persist(store.start_and_succeed, patience, job, result)
    else:
        recorded = persist(store.succeed, patience, job_id, attempt, result)
    return _ended(task, store, job, recorded, "succeeded", result=result)


def _heartbeat(
    runtime: Runtime,
    job: Job,
    gate: limits.Gate,
    interrupter: Interrupter,
    claim_delay: float | None,
) -> Heartbeat:
    """The attempt's heartbeat, started; it writes the claim of an attempt not yet
    claimed (``claim_delay`` not None) once that many seconds have passed."""
    store = runtime.store

    def progressed(fraction: float, message: str | None) -> None:
        # Kept on the claimed record too, so the end's event says what the store says.
        job["progress"], job["progress_message"] = fraction, message
        events.job_changed(runtime.settings, job, "running")

    def write_claim() -> bool:
        if not store.record_start(job):
            return False
        events.job_changed(runtime.settings, job, "running")
        return True

    return Heartbeat(
        store,
        job["_id"],
        job["attempts"],
        interval=runtime.settings.lease_seconds / 3,
        on_lost=interrupter.fire,
        on_beat=gate.renew,
        on_progress=progressed,
        pending_start=None if claim_delay is None else write_claim,
        start_by=time.monotonic() + (claim_delay or 0.0),
    ).start()


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
        if job.get("workflow_id"):
            progression(task.app, task.runtime).job_ended(job, status, result, error)
    return _outcome(recorded, what or status)


def _failed(
    task: JobTask, store: JobStore, job_type: JobType, job: Job, exc: Exception, patience: float
) -> str:
    job_id, attempt, policy = job["_id"], job["attempts"], job_type.retry
    if isinstance(exc, SoftTimeLimitExceeded):
        error = error_info(exc, reason="timeout")
        recorded = persist(store.fail, patience, job_id, attempt, error)
        return _ended(task, store, job, recorded, "failed", "failed: timeout", error=error)
    if isinstance(exc, BadJobInput):
        error = error_info(exc, reason=exc.reason)  # running it again meets the same input
        recorded = persist(store.fail, patience, job_id, attempt, error)
        return _ended(task, store, job, recorded, "failed", error=error)
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


def _not_claimed(task: JobTask, store: JobStore, job_id: str, gate: limits.Gate) -> str:
    """A delivery that may not run the job: early, duplicate, or for a finished job."""
    try:
        job = store.get(job_id)
    except JobNotFound:
        gate.limits.pass_on(task.app, job_id, None)  # perhaps deleted while parked
        return "skipped: no such job"
    run_at = job.get("run_at")
    if job["status"] in (Status.SCHEDULED, Status.RETRYING) and run_at and run_at > now():
        # Delivered before its time: put it back until then.
        raise task.retry(eta=run_at, max_retries=None)
    # It may be the wake of a job cancelled (or run) while it waited behind a limit:
    # the slot that woke it goes to the next in line instead of idling until a sweep.
    gate.limits.pass_on(task.app, job_id, job)
    return f"skipped: {job['status']}"
