"""Moving a workflow on when one of its step jobs starts or ends.

Celery's chord counter, made durable: the counter of a fan-out lives in the
workflow's record and moves with one conditional update, and the member whose
update makes it complete (a second conditional update, on the count) closes
the step and releases what comes after, exactly once. Nothing polls. Every
decision is such an update, so the same call made twice (a worker, then the
sweeper after a crash) changes nothing the second time.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import KombuError, OperationalError

from jobline.core.errors import JoblineError
from jobline.engine import metrics, queue, webhooks
from jobline.engine.workflows.spec import dependents
from jobline.engine.workflows.steps import Steps
from jobline.store.records import Job, Status
from jobline.store.views import workflow_view
from jobline.store.workflows import (
    ACTIVE,
    STEP_ACTIVE,
    STEP_ENDED,
    FlowStatus,
    StepStatus,
    Workflow,
)

log = logging.getLogger(__name__)

ADVANCE_TASK = "jobline.advance_workflow"

ENDED_BADLY = frozenset({StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED})


class Progression(Steps):
    """A workflow's steps, released as their needs succeed, until nothing more can run."""

    def job_started(self, job: Job) -> None:
        """A step job was claimed: its step is running. Never raises (it is only a status).

        Of a fan-out, only the first item says so: one write per step, not per item.
        """
        if job.get("item") not in (None, 0):
            return
        try:
            self.flows.step_started(job["workflow_id"], job["step_index"], job["run"])
        except Exception:
            log.warning("could not mark step %s running", job.get("step"), exc_info=True)

    def job_ended(
        self, job: Job, status: str, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        """A step job reached ``status`` (recorded): count it, close its step, move on.

        Never raises: a failure here (MongoDB or the broker gone) leaves the
        workflow for the sweeper, which makes the same calls again.
        """
        try:
            self._ended(job, status, result, error)
        except Exception:
            log.warning(
                "workflow %s: could not move on after job %s; the sweeper will",
                job.get("workflow_id"),
                job.get("_id"),
                exc_info=True,
            )

    def _ended(self, job: Job, status: str, result: Any, error: dict[str, Any] | None) -> None:
        workflow_id, i, run, item = job["workflow_id"], job["step_index"], job["run"], job["item"]
        if status == Status.SUCCEEDED:
            if item is None:
                if self.flows.end_step(workflow_id, i, run, StepStatus.SUCCEEDED, result=result):
                    self.move_on(workflow_id)
                return
            self.flows.count_member(workflow_id, i, run)
            counts = self.flows.counters(workflow_id)
            if counts is not None and counts["steps"][i]["done"] >= counts["steps"][i]["total"]:
                self.move_on(workflow_id)  # the closing update there decides who closes
            return
        ended = StepStatus.FAILED if status == Status.FAILED else StepStatus.CANCELLED
        error = {
            "reason": (error or {}).get("reason", str(ended)),
            "message": (error or {}).get("message") or f"job {job['_id']} was {status}",
            "job_id": job["_id"],
            "item": item,
        }
        if self.flows.end_step(workflow_id, i, run, ended, error=error):
            if item is not None:  # the rest of the fan-out
                self.stop_jobs(workflow_id, i, {"id": job["step"], "run": run})
            self.move_on(workflow_id)

    def move_on(self, workflow_id: str) -> None:
        """Advance the workflow now (inline), or in a task of its own.

        A step job's worker hands the work on: releasing a fan-out of 1,000
        items must not count against the time limit of the job that finished.
        A lost message delays the workflow until the sweeper looks (a lease).
        """
        if self.inline:
            self.advance(workflow_id)
            return
        try:
            self.celery.send_task(ADVANCE_TASK, args=[workflow_id], queue=queue.DEFAULT_QUEUE)
        except (OperationalError, KombuError, ConnectionError, OSError) as exc:
            log.warning("workflow %s: could not hand on (%s); the sweeper will", workflow_id, exc)

    def close_fan_in(self, workflow: Workflow, i: int) -> bool:
        """Close a fan-out whose members have all been counted; True for the one closer.

        The count says when to look; the members' own records say whether the
        step is done. Its result is their results in item order.
        """
        step, workflow_id = workflow["steps"][i], workflow["_id"]
        if step["status"] not in STEP_ACTIVE or step["done"] < step["total"]:
            return False
        record = self.flows.find_run(workflow_id, i, step["run"])
        job_ids = record["job_ids"] if record else []
        jobs = self.flows.run_jobs(workflow_id, step["id"], job_ids, ("status", "result"))
        if len(jobs) != step["total"] or any(j["status"] != Status.SUCCEEDED for j in jobs):
            return False  # counted ahead of the records (a repair racing a worker)
        return self.flows.end_step(
            workflow["_id"],
            i,
            step["run"],
            StepStatus.SUCCEEDED,
            result=[job.get("result") for job in jobs],
            done=step["total"],
        )

    def advance(self, workflow_id: str) -> None:
        """Skip what can no longer run, release what can, and end the workflow when all ended."""
        # Each pass that changed something ended a step; a pass that did not is the last.
        for _ in range(202):
            workflow = self.flows.find(workflow_id)
            if workflow is None or workflow["status"] not in ACTIVE:
                return
            if not self._settle(workflow):
                return

    def _settle(self, workflow: Workflow) -> bool:
        """One look at the steps; True if a step ended, so another look is needed."""
        steps, workflow_id = workflow["steps"], workflow["_id"]
        status = {step["id"]: StepStatus(step["status"]) for step in steps}
        changed = False
        for i, step in enumerate(steps):
            if step.get("for_each") and step["total"] and step["done"] >= step["total"]:
                changed |= self.close_fan_in(workflow, i)  # a closer that crashed
        doomed = dependents(steps, {sid for sid, s in status.items() if s in ENDED_BADLY})
        for i, step in enumerate(steps):
            if step["id"] in doomed and status[step["id"]] is StepStatus.WAITING:
                changed |= self.flows.skip_step(workflow_id, i, step["run"])
        for i, step in enumerate(steps):
            ready = all(status[need] is StepStatus.SUCCEEDED for need in step["needs"])
            if status[step["id"]] is StepStatus.WAITING and ready and step["id"] not in doomed:
                changed |= self.release(workflow, i)
        if not changed and all(s in STEP_ENDED for s in status.values()):
            self.conclude(workflow)
        return changed

    def conclude(self, workflow: Workflow) -> None:
        """End a workflow whose steps have all ended: failed if one failed or was cancelled."""
        bad = next((s for s in workflow["steps"] if s["status"] in ENDED_BADLY - {"skipped"}), None)
        outcome, error = FlowStatus.SUCCEEDED, None
        if bad is not None:
            outcome = FlowStatus.FAILED
            cause = bad.get("error") or {}
            error = {
                "step": bad["id"],
                "reason": cause.get("reason", bad["status"]),
                "message": f"step {bad['id']} {bad['status']}: {cause.get('message', '')}".strip(),
            }
        if self.flows.conclude(workflow["_id"], outcome, error):
            self.finished(workflow["_id"])

    def finished(self, workflow_id: str) -> None:
        """Once a workflow has ended (exactly once): count it, log it, send its webhook."""
        workflow = self.flows.find(workflow_id)
        if workflow is None:
            return
        metrics.WORKFLOWS_FINISHED.labels(workflow["status"]).inc()
        log.info(
            "workflow %s",
            workflow["status"],
            extra={"workflow_id": workflow_id, "owner": workflow.get("owner")},
        )
        if workflow.get("callback_url"):
            try:
                view = workflow_view(workflow, self.flows.runs_of(workflow_id))
                webhooks.notify_workflow(self.celery, view)
            except JoblineError:
                log.warning("could not queue the webhook of workflow %s", workflow_id)
