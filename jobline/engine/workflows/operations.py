"""What clients ask of workflows: submit, cancel, retry and delete, over a Progression."""

from __future__ import annotations

import logging

from jobline.core.errors import InvalidTransition
from jobline.engine import events, metrics, queue, webhooks
from jobline.engine.workflows import inputs
from jobline.engine.workflows.progress import Progression
from jobline.engine.workflows.spec import WorkflowInvalid, WorkflowRequest, check
from jobline.engine.workflows.steps import BadInput
from jobline.store.records import Job
from jobline.store.step_runs import run_id
from jobline.store.workflows import (
    ACTIVE,
    STEP_ACTIVE,
    StepStatus,
    Workflow,
    new_workflow,
    params_record,
)

log = logging.getLogger(__name__)


def submit(p: Progression, request: WorkflowRequest, owner: str | None = None) -> Workflow:
    """Check, record and start a workflow: its steps without needs are queued at once.

    Nothing is stored for a refused workflow (WorkflowInvalid, 422), and a
    workflow whose first jobs cannot be published is taken back (503).
    """
    check(request, p.catalogue)
    inputs.check_submission(p.files, request, p.catalogue, owner)
    if request.callback_url:  # a secret to sign with, and a host webhooks may reach
        webhooks.check_callback(p.settings, str(request.callback_url))
    workflow = new_workflow(
        [step.model_dump(mode="json") for step in request.steps],
        owner=owner,
        priority=queue.DEFAULT_PRIORITY if request.priority is None else request.priority,
        callback_url=str(request.callback_url) if request.callback_url else None,
    )
    params = params_record(workflow["_id"], [s.model_dump() for s in request.steps])
    jobs: list[Job] = []
    records = [params]
    for i, step in enumerate(workflow["steps"]):
        if not step["needs"]:
            try:
                mine = p.jobs_of(workflow, i, params=params["params"])
            except BadInput as exc:  # a file deleted since the check above
                problem = {"loc": ["steps", i, "params"], "msg": str(exc), "type": "bad_input"}
                raise WorkflowInvalid([problem]) from None
            step.update(status=str(StepStatus.QUEUED), total=len(mine))
            ids = [job["_id"] for job in mine]
            run = {"_id": run_id(workflow["_id"], i, 0), "workflow_id": workflow["_id"]}
            records.append({**run, "job_ids": ids, "result": None})
            jobs += mine
    p.flows.insert_runs(records)
    try:
        p.flows.insert(workflow)
        p.flows.insert_jobs(jobs)
        if any(job.get("inputs") for job in jobs):
            inputs.keep(p.files, jobs)
        _, refused = queue.publish_many(p.celery, [(j, p.catalogue.get(j["type"])) for j in jobs])
        if refused is not None:
            raise refused
    except Exception:
        try:
            p.flows.discard(workflow["_id"], [job["_id"] for job in jobs])
        except Exception:  # the sweeper finds it stalled and publishes its jobs
            log.exception("could not take back workflow %s", workflow["_id"])
        raise
    metrics.WORKFLOWS_SUBMITTED.inc()
    for job in jobs:
        metrics.JOBS_SUBMITTED.labels(job["type"]).inc()
    events.jobs_submitted(p.settings, jobs)
    log.info("workflow submitted", extra={"workflow_id": workflow["_id"], "owner": owner})
    return workflow


def cancel(p: Progression, workflow_id: str, owner: str | None = None) -> Workflow:
    """Cancel an unfinished workflow: running step jobs are stopped, waiting ones never start."""
    for _ in range(5):
        workflow = p.flows.get(workflow_id, owner)
        if workflow["status"] not in ACTIVE:
            return workflow
        if p.flows.cancel(workflow):
            break
    else:
        raise InvalidTransition(f"workflow {workflow_id} kept changing; try again")
    for i, step in enumerate(workflow["steps"]):
        if step["status"] in STEP_ACTIVE:
            p.stop_jobs(workflow_id, i, step)
    p.finished(workflow_id)
    return p.flows.get(workflow_id, owner)


def retry(p: Progression, workflow_id: str, owner: str | None = None) -> Workflow:
    """Run a failed or cancelled workflow's failed, cancelled and skipped steps again.

    Succeeded steps keep their results and jobs; 409 for a workflow in any other state.
    """
    restarted = p.flows.restart(p.flows.get(workflow_id, owner))
    metrics.WORKFLOWS_RETRIED.inc()
    log.info("workflow retried", extra={"workflow_id": workflow_id, "owner": owner})
    p.move_on(restarted["_id"])
    return p.flows.get(workflow_id, owner)


def delete(p: Progression, workflow_id: str, owner: str | None = None) -> None:
    """Cancel the workflow if it is unfinished, then remove its record (its jobs stay jobs)."""
    cancel(p, workflow_id, owner)
    p.flows.delete(workflow_id, owner)
