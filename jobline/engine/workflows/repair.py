"""The sweeper's pass over workflows a crash left behind.

A worker killed between recording a step job's end and moving the workflow
on, or in the middle of a release, leaves a workflow that no longer changes.
Once it has not changed for a lease, the sweeper makes the calls the worker
would have made: each is a conditional update, so one already made changes
nothing, and a step's jobs are inserted under the ids its release chose.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from jobline.core.errors import BrokerUnavailable
from jobline.engine import queue
from jobline.engine.workflows.progress import Progression
from jobline.store.records import TERMINAL, Job, Status, now
from jobline.store.workflows import STEP_ACTIVE, Workflow

log = logging.getLogger(__name__)


def repair(p: Progression) -> int:
    """Look again at every workflow unchanged for a lease; returns how many were looked at."""
    lease = timedelta(seconds=p.settings.lease_seconds)
    seen = 0
    for workflow in list(p.flows.stalled(lease)):
        reconcile(p, workflow, lease)
        seen += 1
    return seen


def reconcile(p: Progression, workflow: Workflow, lease: timedelta) -> None:
    """Redo what a crash may have left undone for one workflow, then move it on."""
    workflow_id = workflow["_id"]
    for i, step in enumerate(workflow["steps"]):
        if step["status"] not in STEP_ACTIVE:
            continue
        record = p.flows.find_run(workflow_id, i, step["run"])
        job_ids = record["job_ids"] if record else []
        jobs = p.flows.run_jobs(workflow_id, step["id"], job_ids)
        if len(jobs) < len(job_ids):
            log.warning("workflow %s: step %s lost jobs in a release", workflow_id, step["id"])
            have = {job["_id"] for job in jobs}
            built = p.jobs_of(workflow, i, job_ids)
            p.start(workflow_id, step["id"], [job for job in built if job["_id"] not in have])
        if step.get("for_each"):
            succeeded = sum(1 for job in jobs if job["status"] == Status.SUCCEEDED)
            p.flows.recount(workflow_id, i, step["run"], succeeded)
        for job in jobs:
            fan_in_member = step.get("for_each") and job["status"] == Status.SUCCEEDED
            if job["status"] in TERMINAL and not fan_in_member:
                p.job_ended(job, job["status"], job.get("result"), job.get("error"))
        _republish_unclaimed(p, jobs, lease)
    p.advance(workflow_id)


def _republish_unclaimed(p: Progression, jobs: list[Job], lease: timedelta) -> None:
    """Publish again step jobs never claimed for a lease, if their queue is empty (lost)."""
    cutoff = now() - lease
    stale = [j for j in jobs if j["status"] == Status.QUEUED and j["updated_at"] < cutoff]
    empty: dict[str, bool] = {}
    for job in stale:
        name = job.get("queue") or queue.DEFAULT_QUEUE
        try:
            if name not in empty:
                empty[name] = queue.queue_depth(p.celery, name) == 0
        except BrokerUnavailable:
            return
        if empty[name] and p.store.touch(job, job["task_id"]):
            p.publish([job])
