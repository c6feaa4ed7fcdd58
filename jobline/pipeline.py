"""Submitting, cancelling and retrying jobs: the store and the broker, in the right order.

A job is written to MongoDB before its message is published, so a worker never
receives a pointer to nothing; if publishing fails the record is taken back and
the caller told, so nothing is accepted that will not run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Celery

from jobline import events, ids, queue
from jobline.errors import BrokerUnavailable
from jobline.jobs import Catalogue
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

    def submit(
        self,
        type: str,
        params: Any,
        *,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        priority: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Job:
        """Validate, record and publish a job; StoreUnavailable or BrokerUnavailable on failure."""
        job_type = self.catalogue.get(type)
        model = job_type.validate_params(params)
        if delay_seconds is not None:
            run_at = now() + timedelta(seconds=delay_seconds)
        job = new_job(
            type,
            model.model_dump(mode="json"),
            queue=job_type.queue,
            run_at=run_at,
            priority=priority,
        )
        job.update(extra or {})
        self.store.insert(job)
        events.job_changed(self.settings, job, job["status"])
        try:
            queue.publish(self.celery, job, job_type)
        except BrokerUnavailable:
            self._take_back(job["_id"])
            raise
        return job

    def _take_back(self, job_id: str) -> None:
        try:
            self.store.discard(job_id)
        except Exception:  # the sweeper publishes it later, so it still runs
            log.exception("could not take back unpublished job %s", job_id)

    def cancel(self, job_id: str) -> Job:
        """Cancel an unfinished job (a running one is stopped); returns it as it is now."""
        before = self.store.cancel(job_id)
        if before["status"] == Status.RUNNING and before.get("task_id"):
            queue.revoke(self.celery, before["task_id"])
        job = self.store.get(job_id)
        if not Status(before["status"]).finished:
            events.job_changed(self.settings, job, job["status"])
        return job

    def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again as a new attempt."""
        job = self.store.restart(job_id, task_id=ids.new_id())
        events.job_changed(self.settings, job, job["status"])
        try:
            queue.publish(self.celery, job, self.catalogue.get(job["type"]))
        except BrokerUnavailable:
            # The record says queued; the sweeper publishes it once the broker is back.
            log.warning("broker down; job %s will be published by the sweeper", job_id)
        return job

    def delete(self, job_id: str) -> None:
        """Cancel the job if it is unfinished, then remove it."""
        self.cancel(job_id)
        self.store.delete(job_id)
