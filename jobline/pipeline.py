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

from jobline import events, ids, queue, scheduling, webhooks
from jobline.errors import BrokerUnavailable
from jobline.jobs import Catalogue, JobType
from jobline.settings import Settings
from jobline.store import Job, JobStore, Status, new_job, now

log = logging.getLogger(__name__)


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
        job, job_type = self._record(
            Submission(type, params, run_at, delay_seconds, priority, extra)
        )
        self.store.insert(job)
        events.job_changed(self.settings, job, job["status"])
        if job.get("held"):
            return job
        try:
            queue.publish(self.celery, job, job_type)
        except BrokerUnavailable:
            self._take_back([job["_id"]])
            raise
        return job

    def submit_many(self, submissions: list[Submission]) -> list[Job | BrokerUnavailable]:
        """Record many jobs in one insert, then publish each; in order, each job or why not.

        Once the broker refuses one message the rest are taken back unpublished
        rather than each waiting out its own publish retries.
        """
        built = [self._record(s) for s in submissions]
        self.store.insert_many([job for job, _ in built])
        events.jobs_submitted(self.settings, [job for job, _ in built])
        outcomes: list[Job | BrokerUnavailable] = []
        for i, (job, job_type) in enumerate(built):
            if job.get("held"):
                outcomes.append(job)
                continue
            try:
                queue.publish(self.celery, job, job_type)
            except BrokerUnavailable as exc:
                unpublished = [job["_id"] for job, _ in built[i:]]
                self._take_back(unpublished)
                return outcomes + [exc] * len(unpublished)
            outcomes.append(job)
        return outcomes

    def _record(self, s: Submission) -> tuple[Job, JobType]:
        """The record of a submission, not yet stored; raises on an unknown type or bad params."""
        job_type = self.catalogue.get(s.type)
        model = job_type.validate_params(s.params)
        if s.extra and s.extra.get("callback_url"):
            webhooks.require_secret(self.settings)
        run_at = s.run_at
        if s.delay_seconds is not None:
            run_at = now() + timedelta(seconds=s.delay_seconds)
        job = new_job(
            s.type,
            model.model_dump(mode="json"),
            queue=job_type.queue,
            run_at=run_at,
            priority=queue.DEFAULT_PRIORITY if s.priority is None else s.priority,
        )
        job.update(s.extra or {})
        if scheduling.holds(job, self.settings):
            job["held"] = True  # published by the sweeper when due; see jobline.scheduling
        return job, job_type

    def _take_back(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        try:
            self.store.discard(job_ids)
        except Exception:  # the sweeper publishes them later, so they still run
            log.exception("could not take back %d unpublished jobs", len(job_ids))

    def cancel(self, job_id: str) -> Job:
        """Cancel an unfinished job (a running one is stopped); returns it as it is now."""
        before = self.store.cancel(job_id)
        if before["status"] == Status.RUNNING and before.get("task_id"):
            queue.revoke(self.celery, before["task_id"])
        job = self.store.get(job_id)
        if not Status(before["status"]).finished:
            events.job_changed(self.settings, job, job["status"])
            webhooks.notify(self.celery, job)
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
