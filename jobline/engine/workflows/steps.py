"""Turning a step into jobs: building them, releasing the step once, starting and stopping them.

A release first records the step run with the ids of the jobs it will have
(one insert under a unique ``_id``: the first caller's ids are the run's for
good), then moves the step from waiting to queued with a conditional update,
then inserts those jobs and publishes them. A crash anywhere in between leaves
a release that the next caller (the sweeper) completes with the same ids, so a
step run gets its jobs once, and each job one message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from celery import Celery
from pydantic import ValidationError

from jobline.core.errors import JoblineError
from jobline.core.settings import Settings
from jobline.engine import events, metrics, queue
from jobline.engine.workflows import inputs
from jobline.jobs import Catalogue
from jobline.store.files import FileStore
from jobline.store.jobs import JobStore
from jobline.store.records import Job, Status, new_job
from jobline.store.workflows import ACTIVE, STEP_ACTIVE, StepStatus, Workflow, WorkflowStore

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
    # True: move a workflow on in this call (the sweeper, the advance task); False:
    # hand it to the advance task (a step job's worker, the API).
    inline: bool = False
    flows: WorkflowStore = field(init=False)

    def __post_init__(self) -> None:
        self.flows = WorkflowStore(self.store.db, self.store.result_ttl)

    @cached_property
    def files(self) -> FileStore:
        """GridFS, for the steps whose params name files (made on first use)."""
        return FileStore.of(self.settings, self.store.db)

    def jobs_of(
        self,
        workflow: Workflow,
        i: int,
        job_ids: Sequence[str] = (),
        params: Sequence[dict[str, Any]] | None = None,
    ) -> list[Job]:
        """The jobs step ``i`` runs in its current run (under ``job_ids`` when given).

        One job, or one per item of its ``for_each`` need's result; BadInput if
        an item is not an object or its params are not valid for the type.
        ``params``: every step's params, when they are not stored yet.
        """
        step, workflow_id = workflow["steps"][i], workflow["_id"]
        job_type = self.catalogue.get(step["type"])
        fan_out = step.get("for_each")
        own = (params if params is not None else self.flows.params_of(workflow_id))[i]
        results = {need: self._result(workflow, need) for need in step["needs"]}
        # A fan-out's jobs get their item in params, not the whole list again.
        needed = {need: result for need, result in results.items() if need != fan_out}
        each = [own] if fan_out is None else _items(step, own, results[fan_out])
        jobs = []
        named: list[list[str]] = []
        for n, raw in enumerate(each):
            try:
                model = job_type.validate_params(raw)
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_input=False)
                where = ", ".join(".".join(str(p) for p in e["loc"]) or "params" for e in errors)
                raise BadInput(f"item {n} has bad params: {where}", item=n, errors=errors) from None
            valid = model.model_dump(mode="json")
            named.append(sorted({ref for _, ref in inputs.refs_of(model)}))
            job = new_job(
                step["type"],
                valid,
                queue=job_type.queue,
                priority=workflow.get("priority"),
                owner=workflow.get("owner"),
                job_id=job_ids[n] if job_ids else None,
            )
            job.update(
                workflow_id=workflow_id,
                step=step["id"],
                step_index=i,
                run=step["run"],
                item=None if fan_out is None else n,
                # Not "inputs": a job's record names its input files under that key.
                step_inputs=needed,
            )
            if named[n]:
                job["inputs"] = named[n]
            jobs.append(job)
        self._check_files(workflow, named, fan_out is not None)
        return jobs

    def _check_files(self, workflow: Workflow, named: list[list[str]], fan_out: bool) -> None:
        """BadInput if a job's params name a file that is not the workflow owner's."""
        if not any(named):
            return  # most steps: no file, no query
        missing = inputs.unknown(
            self.files, (f for refs in named for f in refs), workflow.get("owner")
        )
        for n, refs in enumerate(named):
            if gone := sorted(missing.intersection(refs)):
                where = f"item {n}" if fan_out else "its params"
                message = f"{where} names no file of the workflow's owner: {', '.join(gone)}"
                raise BadInput(message, item=n if fan_out else None)

    def _result(self, workflow: Workflow, step_id: str) -> Any:
        i = next(n for n, s in enumerate(workflow["steps"]) if s["id"] == step_id)
        record = self.flows.find_run(workflow["_id"], i, workflow["steps"][i]["run"])
        return record["result"] if record else None

    def release(self, workflow: Workflow, i: int) -> bool:
        """Start step ``i``, whose needs have succeeded; True if it ended at once.

        An empty fan-out succeeds with ``[]`` and one that cannot run fails,
        both without a job. Otherwise the run's record fixes its job ids (the
        first caller's), and whoever gets here, first or again after a crash,
        completes that one release: the jobs are inserted under those ids, so
        each is inserted, and published, once.
        """
        step, workflow_id, run = workflow["steps"][i], workflow["_id"], workflow["steps"][i]["run"]
        try:
            jobs = self.jobs_of(workflow, i)
        except BadInput as exc:
            return self._fail_unstarted(workflow_id, i, run, exc.error)
        except JoblineError as exc:  # the type left the catalogue since submission
            error = {"reason": "unknown_type", "message": str(exc), "item": None, "errors": None}
            return self._fail_unstarted(workflow_id, i, run, error)
        record = self.flows.record_run(workflow_id, i, run, [job["_id"] for job in jobs])
        if record["job_ids"] != [job["_id"] for job in jobs]:
            jobs = self.jobs_of(workflow, i, record["job_ids"])  # another caller's release
        if not jobs:
            return self.flows.end_step(
                workflow_id, i, run, StepStatus.SUCCEEDED, result=[], started=False
            )
        if not self.flows.release_step(workflow_id, i, run, len(jobs)):
            now = self.flows.counters(workflow_id)
            mine = now is not None and now["steps"][i]["run"] == run
            if not mine or now is None or now["steps"][i]["status"] not in STEP_ACTIVE:
                return False  # cancelled, or a later run's: these jobs must never exist
        self.start(workflow_id, step["id"], jobs)
        return False

    def _fail_unstarted(self, workflow_id: str, i: int, run: int, error: dict[str, Any]) -> bool:
        return self.flows.end_step(
            workflow_id, i, run, StepStatus.FAILED, error=error, started=False
        )

    def start(self, workflow_id: str, step_id: str, jobs: Sequence[Job]) -> None:
        """Insert a released step's jobs (those not there yet) and publish those inserted.

        Read back after the insert: a cancel that came in between found no jobs
        to stop, so they are stopped here instead.
        """
        inserted = self.flows.insert_jobs(jobs)
        if any(job.get("inputs") for job in inserted):
            inputs.keep(self.files, inserted)
        current = self.flows.counters(workflow_id)
        if current is None or current["status"] not in ACTIVE:
            self.flows.cancel_waiting_jobs(workflow_id, step_id, [job["_id"] for job in jobs])
            return
        events.jobs_submitted(self.settings, inserted)
        self.publish(inserted)

    def publish(self, jobs: Sequence[Job]) -> None:
        """Send step jobs' messages; those the broker refuses the sweeper sends later."""
        typed = [(job, self.catalogue.get(job["type"])) for job in jobs]
        sent, refused = queue.publish_many(self.celery, typed)
        for job in jobs[:sent]:
            metrics.JOBS_SUBMITTED.labels(job["type"]).inc()
        if refused is not None:
            log.warning(
                "could not publish %d step jobs (%s); left to the sweeper",
                len(jobs) - sent,
                refused,
            )

    def stop_jobs(self, workflow_id: str, i: int, step: dict[str, Any]) -> None:
        """Cancel a step run's unfinished jobs: waiting ones in one update, running ones stopped."""
        record = self.flows.find_run(workflow_id, i, step["run"])
        job_ids = record["job_ids"] if record else []
        self.flows.cancel_waiting_jobs(workflow_id, step["id"], job_ids)
        fields = ("status", "task_id", "type")
        for job in self.flows.run_jobs(workflow_id, step["id"], job_ids, fields):
            if job["status"] != Status.RUNNING:
                continue
            before = self.store.cancel(job["_id"])
            if before["status"] == Status.RUNNING and before.get("task_id"):
                metrics.JOBS_CANCELLED.labels(before["type"]).inc()
                queue.revoke(self.celery, before["task_id"])
                events.job_changed(self.settings, before, str(Status.CANCELLED))


def _items(step: dict[str, Any], params: dict[str, Any], result: Any) -> list[dict[str, Any]]:
    """The params of each job of a fan-out: ``{**params, **item}``; BadInput for a bad item."""
    if not isinstance(result, list):
        raise BadInput(f"the result of {step['for_each']!r} is not a list, so it cannot fan out")
    each = []
    for n, item in enumerate(result):
        if not isinstance(item, dict):
            raise BadInput(f"item {n} of {step['for_each']!r} is not an object", item=n)
        each.append({**params, **item})
    return each
