"""Submitting, cancelling and retrying jobs: the store and the broker, in the right order.

A job is written to MongoDB before its message is published, so a worker never
receives a pointer to nothing; if publishing fails the record is taken back and
the caller told, so nothing is accepted that will not run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import Celery

from jobline import ids, metrics, queue
from jobline.cache import TTLCache
from jobline.errors import BrokerUnavailable, QueueFull
from jobline.jobs import Catalogue
from jobline.logs import job_fields
from jobline.settings import Settings
from jobline.store import Job, JobStore, Status, new_job, now

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """The operations clients ask of jobline, over one store and one Celery app."""

    settings: Settings
    store: JobStore
    celery: Celery
    catalogue: Catalogue
    # Queue depths are read from the broker at most once a second per queue.
    _depths: TTLCache[int] = field(default_factory=lambda: TTLCache(1.0), repr=False)

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
        job_type = self.catalogue.get(type)
        model = job_type.validate_params(params)
        self.admit(job_type.queue)
        if delay_seconds is not None:
            run_at = now() + timedelta(seconds=delay_seconds)
        job = new_job(
            type,
            model.model_dump(mode="json"),
            queue=job_type.queue,
            run_at=run_at,
            priority=priority,
            owner=owner,
        )
        job.update(extra or {})
        self.store.insert(job)
        try:
            queue.publish(self.celery, job, job_type)
        except BrokerUnavailable:
            self._take_back(job["_id"])
            raise
        metrics.JOBS_SUBMITTED.labels(type).inc()
        log.info(
            "job submitted",
            extra={"job_id": job["_id"], "type": type, "owner": owner, "queue": job["queue"]},
        )
        return job

    def admit(self, queue_name: str) -> None:
        """QueueFull when ``queue_name`` holds more than JOBLINE_MAX_QUEUE_DEPTH messages."""
        limit = self.settings.max_queue_depth
        if not limit:
            return
        depth = self._depths.get_or_compute(
            queue_name, lambda: queue.queue_depth(self.celery, queue_name)
        )
        if depth > limit:
            raise QueueFull(f"queue {queue_name!r} holds {depth} jobs (limit {limit}); retry later")

    def _take_back(self, job_id: str) -> None:
        try:
            self.store.discard(job_id)
        except Exception:  # the sweeper publishes it later, so it still runs
            log.exception("could not take back unpublished job %s", job_id)

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel an unfinished job (a running one is stopped); returns it as it is now."""
        before = self.store.cancel(job_id, owner)
        if not Status(before["status"]).finished:
            metrics.JOBS_CANCELLED.labels(before["type"]).inc()
            log.info("job cancelled", extra=job_fields(before))
        if before["status"] == Status.RUNNING and before.get("task_id"):
            queue.revoke(self.celery, before["task_id"])
        return self.store.get(job_id, owner)

    def retry(self, job_id: str, owner: str | None = None) -> Job:
        """Run a failed or cancelled job again as a new attempt."""
        job = self.store.restart(job_id, task_id=ids.new_id(), owner=owner)
        metrics.JOBS_RETRIED.labels(job["type"]).inc()
        log.info("job retried", extra=job_fields(job))
        try:
            queue.publish(self.celery, job, self.catalogue.get(job["type"]))
        except BrokerUnavailable:
            # The record says queued; the sweeper publishes it once the broker is back.
            log.warning("broker down; job %s will be published by the sweeper", job_id)
        return job

    def delete(self, job_id: str, owner: str | None = None) -> None:
        """Cancel the job if it is unfinished, then remove it."""
        self.cancel(job_id, owner)
        self.store.delete(job_id, owner)
