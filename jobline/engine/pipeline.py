"""Submitting, cancelling and retrying jobs: the store and the broker, in the right order.

A job is written to MongoDB before its message is published, so a worker never
receives a pointer to nothing; if publishing fails the record is taken back and
the caller told, so nothing is accepted that will not run.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cachetools
from celery import Celery

from jobline.core import ids
from jobline.core.errors import BrokerUnavailable, QueueFull, StoreUnavailable, Unavailable
from jobline.core.logs import job_fields
from jobline.core.settings import Settings
from jobline.engine import delays, events, metrics, queue, retention, webhooks
from jobline.engine.workflows.progress import Progression
from jobline.jobs import Catalogue, JobType
from jobline.store.jobs import JobStore
from jobline.store.records import Job, Status, new_job, now

log = logging.getLogger(__name__)

# A batch is stored this many jobs an insert, the next insert running while the
# slice before it is published: the store's wait and the broker's overlap.
INSERT_SLICE = 200


@dataclass(frozen=True)
class Submission:
    """One job to submit: its type, its params, and when and how urgently to run it."""

    type: str
    params: Any
    run_at: datetime | None = None
    delay_seconds: float | None = None
    priority: int | None = None
    # Further fields stored on the job (callback_url, idempotency_key…).
    extra: dict[str, Any] | None = None
    # The name of the API key that submitted it; None when auth is off.
    owner: str | None = None


@dataclass
class Pipeline:
    """The operations clients ask of jobline, over one store and one Celery app."""

    settings: Settings
    store: JobStore
    celery: Celery
    catalogue: Catalogue
    # Queue depths are read from the broker at most once a second per queue.
    _depths: cachetools.TTLCache[str, int] = field(
        default_factory=lambda: cachetools.TTLCache(maxsize=1024, ttl=1.0), repr=False
    )
    _depths_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def submit(
        self,
        type: str,
        params: Any,
        *,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        priority: int | None = None,
        extra: dict[str, Any] | None = None,
        owner: str | None = None,
    ) -> Job:
        """Validate, record and publish a job; StoreUnavailable, BrokerUnavailable or QueueFull."""
        job, job_type = self._record(
            Submission(type, params, run_at, delay_seconds, priority, extra, owner)
        )
        self.admit(job_type.queue)
        self.store.insert(job)
        events.job_changed(self.settings, job, job["status"])
        if job.get("held"):
            return job
        try:
            queue.publish(self.celery, job, job_type)
        except BrokerUnavailable:
            self._take_back([job["_id"]])
            raise
        _submitted(job)
        return job

    def admit(self, queue_name: str) -> None:
        """QueueFull when ``queue_name`` holds more than JOBLINE_MAX_QUEUE_DEPTH messages."""
        limit = self.settings.max_queue_depth
        if not limit:
            return
        depth = self._depth(queue_name)
        if depth > limit:
            raise QueueFull(f"queue {queue_name!r} holds {depth} jobs (limit {limit}); retry later")

    @cachetools.cachedmethod(lambda self: self._depths, lock=lambda self: self._depths_lock)
    def _depth(self, queue_name: str) -> int:
        return queue.queue_depth(self.celery, queue_name)

    def submit_many(self, submissions: list[Submission]) -> list[Job | Unavailable]:
        """Record many jobs, a slice an insert, then publish each; in order, each job or why not.

        Jobs for a queue deeper than JOBLINE_MAX_QUEUE_DEPTH are refused (QueueFull)
        and never stored.
        """
        built = [self._record(s) for s in submissions]
        full = self._full_queues({job_type.queue for _, job_type in built})
        published = iter(self._publish_all([b for b in built if b[1].queue not in full]))
        return [full.get(job_type.queue) or next(published) for _, job_type in built]

    def _full_queues(self, names: set[str]) -> dict[str, QueueFull]:
        full: dict[str, QueueFull] = {}
        for name in names:
            try:
                self.admit(name)
            except QueueFull as exc:
                full[name] = exc
        return full

    def _publish_all(self, built: list[tuple[Job, JobType]]) -> list[Job | Unavailable]:
        """Insert, then publish, a slice at a time, the next slice's insert running while
        this one's messages go out (each job is stored before its message is sent).

        Once the broker refuses, the rest are taken back unpublished rather than each
        waiting out its own retries. If the store fails on the first slice, nothing was
        accepted and that error is raised; on a later one, the slices before it stand.
        """
        slices = [built[i : i + INSERT_SLICE] for i in range(0, len(built), INSERT_SLICE)]
        if not slices:
            return []
        self._insert_slice(slices[0])  # its failure refuses the whole batch
        outcomes: list[Job | Unavailable] = []
        # A thread starts only for a batch of more than one slice.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobline-insert") as ahead:
            stored: Future[None] | None = None
            for index, part in enumerate(slices):
                if stored is not None and (failure := stored.exception()) is not None:
                    refused = _as_unavailable(failure)
                    outcomes += [refused for _ in built[len(outcomes) :]]
                    break
                following = slices[index + 1] if index + 1 < len(slices) else None
                stored = ahead.submit(self._insert_slice, following) if following else None
                done, refusal = self._publish_slice(part)
                outcomes += done
                if refusal is not None:
                    if stored is not None and stored.exception() is None:
                        self._take_back([job["_id"] for job, _ in following or []])
                    outcomes += [refusal for _ in built[len(outcomes) :]]
                    break
        return outcomes

    def _insert_slice(self, part: list[tuple[Job, JobType]]) -> None:
        self.store.insert_many([job for job, _ in part])
        events.jobs_submitted(self.settings, [job for job, _ in part])

    def _publish_slice(
        self, part: list[tuple[Job, JobType]]
    ) -> tuple[list[Job | Unavailable], BrokerUnavailable | None]:
        """Publish a stored slice: its outcomes, and the broker's refusal if it refused."""
        due = [(job, job_type) for job, job_type in part if not job.get("held")]
        sent, refused = queue.publish_many(self.celery, due)
        unpublished = {job["_id"] for job, _ in due[sent:]}
        self._take_back(list(unpublished))
        outcomes: list[Job | Unavailable] = []
        for job, _ in part:
            if job["_id"] in unpublished and refused is not None:
                outcomes.append(refused)
                continue
            if not job.get("held"):
                _submitted(job)
            outcomes.append(job)
        return outcomes, refused

    def _record(self, s: Submission) -> tuple[Job, JobType]:
        """The record of a submission, not yet stored; raises on an unknown type or bad params."""
        job_type = self.catalogue.get(s.type)
        model = job_type.validate_params(s.params)
        if s.extra and s.extra.get("callback_url"):
            webhooks.check_callback(self.settings, s.extra["callback_url"])
        run_at = s.run_at
        if s.delay_seconds is not None:
            run_at = now() + timedelta(seconds=s.delay_seconds)
        job = new_job(
            s.type,
            model.model_dump(mode="json"),
            queue=job_type.queue,
            run_at=run_at,
            priority=queue.DEFAULT_PRIORITY if s.priority is None else s.priority,
            owner=s.owner,
        )
        job.update(s.extra or {})
        if delays.holds(job, self.settings):
            job["held"] = True  # published by the sweeper when due; see jobline.engine.delays
        return job, job_type

    def _take_back(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        try:
            self.store.discard(job_ids)
        except Exception:  # the sweeper publishes them later, so they still run
            log.exception("could not take back %d unpublished jobs", len(job_ids))

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel an unfinished job (a running one is stopped); returns it as it is now."""
        before = self.store.cancel(job_id, owner)
        if not Status(before["status"]).finished:
            metrics.JOBS_CANCELLED.labels(before["type"]).inc()
            log.info("job cancelled", extra=job_fields(before))
        if before["status"] == Status.RUNNING and before.get("task_id"):
            queue.revoke(self.celery, before["task_id"])
        job = self.store.get(job_id, owner)
        if not Status(before["status"]).finished:
            events.job_changed(self.settings, job, job["status"])
            webhooks.notify(self.celery, job)
            if job.get("workflow_id"):
                self.progression().job_ended(job, Status.CANCELLED)
        return job

    def progression(self, *, inline: bool = False) -> Progression:
        """What moves workflows on, over this pipeline's store, broker and catalogue."""
        return Progression(self.settings, self.store, self.celery, self.catalogue, inline)

    def retry(self, job_id: str, owner: str | None = None) -> Job:
        """Run a failed or cancelled job again as a new attempt."""
        job = self.store.restart(job_id, task_id=ids.new_id(), owner=owner)
        metrics.JOBS_RETRIED.labels(job["type"]).inc()
        log.info("job retried", extra=job_fields(job))
        events.job_changed(self.settings, job, job["status"])
        try:
            queue.publish(self.celery, job, self.catalogue.get(job["type"]))
        except BrokerUnavailable:
            # The record says queued; the sweeper publishes it once the broker is back.
            log.warning("broker down; job %s will be published by the sweeper", job_id)
        return job

    def delete(self, job_id: str, owner: str | None = None) -> None:
        """Cancel the job if it is unfinished, then remove it with its log and files."""
        job = self.cancel(job_id, owner)
        self.store.delete(job_id, owner)
        retention.forget(self.settings, self.store.db, job)


def _as_unavailable(exc: BaseException) -> Unavailable:
    """A later slice's failed insert, as each of its jobs' refusal."""
    if isinstance(exc, Unavailable):
        return exc
    log.error("could not store part of a batch", exc_info=exc)
    return StoreUnavailable(f"job store write failed: {type(exc).__name__}")


def _submitted(job: Job) -> None:
    metrics.JOBS_SUBMITTED.labels(job["type"]).inc()
    log.info("job submitted", extra={**job_fields(job), "queue": job["queue"]})
