"""Turning a step into jobs: building them, releasing the step once, starting and stopping them.

A release is one conditional update (the step from waiting to queued, with the
ids of the jobs it will have), then the insert of those jobs, then their
messages. Only the caller whose update matched goes on, so a step run gets its
jobs once; a crash after the update leaves ids the sweeper inserts under the
same ``_id`` (so at most once) and publishes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from pydantic import ValidationError

from jobline.core.errors import BrokerUnavailable, JoblineError
from jobline.core.settings import Settings
from jobline.engine import events, metrics, queue
from jobline.jobs import Catalogue
from jobline.store.jobs import JobStore
from jobline.store.records import Job, Status, new_job
from jobline.store.workflows import ACTIVE, StepStatus, Workflow, WorkflowStore

log = logging.getLogger(__name__)


class BadInput(Exception):
    """A step cannot run on what its needs gave it: a bad fan-out item, or no list to fan out."""

    def __init__(self, message: str, *, item: int | None = None, errors: Any = None) -> None:
        super().__init__(message)
        self.error = {"reason": "bad_input", "message": message, "item": item, "errors": errors}


@dataclass
class Steps:
    """The store, the broker and the catalogue a workflow's steps are run with."""

    settings: Settings
    store: JobStore
    celery: Celery
    catalogue: Catalogue
    flows: WorkflowStore = field(init=False)

    def __post_init__(self) -> None:
        self.flows = WorkflowStore(self.store.db, self.store.result_ttl)

    def jobs_of(self, workflow: Workflow, i: int, job_ids: Sequence[str] = ()) -> list[Job]:
        """The jobs step ``i`` runs in its current run (under ``job_ids`` when given).

        One job, or one per item of its ``for_each`` need's result; BadInput if
        an item is not an object or its params are not valid for the type.
        """
        step = workflow["steps"][i]
        results = {s["id"]: s["result"] for s in workflow["steps"]}
        job_type = self.catalogue.get(step["type"])
        fan_out = step.get("for_each")
        # A fan-out's jobs get their item in params, not the whole list again.
        inputs = {need: results[need] for need in step["needs"] if need != fan_out}
        params = [step["params"]] if fan_out is None else _items(step, results[fan_out])
        jobs = []
        for n, raw in enumerate(params):
            try:
                valid = job_type.validate_params(raw).model_dump(mode="json")
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_input=False)
                where = ", ".join(".".join(str(p) for p in e["loc"]) or "params" for e in errors)
                raise BadInput(f"item {n} has bad params: {where}", item=n, errors=errors) from None
            job = new_job(
                step["type"],
                valid,
                queue=job_type.queue,
                priority=workflow.get("priority"),
                owner=workflow.get("owner"),
                job_id=job_ids[n] if job_ids else None,
            )
            job.update(
                workflow_id=workflow["_id"],
                step=step["id"],
                step_index=i,
                run=step["run"],
                item=None if fan_out is None else n,
                inputs=inputs,
            )
            jobs.append(job)
        return jobs

    def release(self, workflow: Workflow, i: int) -> bool:
        """Start step ``i``, whose needs have succeeded; True if it ended at once.

        An empty fan-out succeeds with ``[]`` and one that cannot run fails,
        both without a job; otherwise the caller whose update moved the step
        inserts and publishes its jobs.
        """
        step, workflow_id = workflow["steps"][i], workflow["_id"]
        try:
            jobs = self.jobs_of(workflow, i)
        except BadInput as exc:
            return self.flows.end_step(
                workflow_id, i, step["run"], StepStatus.FAILED, error=exc.error, started=False
            )
        except JoblineError as exc:  # the type left the catalogue since submission
            error = {"reason": "unknown_type", "message": str(exc), "item": None, "errors": None}
            return self.flows.end_step(
                workflow_id, i, step["run"], StepStatus.FAILED, error=error, started=False
            )
        if not jobs:
            return self.flows.end_step(
                workflow_id, i, step["run"], StepStatus.SUCCEEDED, result=[], started=False
            )
        if self.flows.release_step(workflow_id, i, step["run"], [job["_id"] for job in jobs]):
            self.start(workflow_id, {**step, "job_ids": [job["_id"] for job in jobs]}, jobs)
        return False

    def start(self, workflow_id: str, step: dict[str, Any], jobs: Sequence[Job]) -> None:
        """Insert a released step's jobs (those not there yet) and publish them.

        Read back after the insert: a cancel that came in between found no jobs
        to stop, so the step's own jobs are stopped here instead.
        """
        inserted = self.flows.insert_jobs(jobs)
        current = self.flows.find(workflow_id)
        if current is None or current["status"] not in ACTIVE:
            self.flows.cancel_waiting_jobs(workflow_id, step)
            return
        events.jobs_submitted(self.settings, inserted)
        for job in inserted:
            self.publish(job)

    def publish(self, job: Job) -> None:
        """Send a step job's message; if the broker is down the sweeper sends it later."""
        try:
            queue.publish(self.celery, job, self.catalogue.get(job["type"]))
        except BrokerUnavailable as exc:
            log.warning("could not publish step job %s (%s); left to the sweeper", job["_id"], exc)
            return
        metrics.JOBS_SUBMITTED.labels(job["type"]).inc()

    def stop_jobs(self, workflow_id: str, step: dict[str, Any]) -> None:
        """Cancel a step's unfinished jobs: waiting ones in one update, running ones stopped."""
        self.flows.cancel_waiting_jobs(workflow_id, step)
        for job in self.flows.step_jobs(workflow_id, step, fields=("status", "task_id", "type")):
            if job["status"] != Status.RUNNING:
                continue
            before = self.store.cancel(job["_id"])
            if before["status"] == Status.RUNNING and before.get("task_id"):
                metrics.JOBS_CANCELLED.labels(before["type"]).inc()
                queue.revoke(self.celery, before["task_id"])
                events.job_changed(self.settings, before, str(Status.CANCELLED))


def _items(step: dict[str, Any], result: Any) -> list[dict[str, Any]]:
    """The params of each job of a fan-out: ``{**params, **item}``; BadInput for a bad item."""
    if not isinstance(result, list):
        raise BadInput(f"the result of {step['for_each']!r} is not a list, so it cannot fan out")
    params = []
    for n, item in enumerate(result):
        if not isinstance(item, dict):
            raise BadInput(f"item {n} of {step['for_each']!r} is not an object", item=n)
        params.append({**step["params"], **item})
    return params
