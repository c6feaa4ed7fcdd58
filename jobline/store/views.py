"""The public shape of a job and of a workflow: what the API answers, webhooks send and
live views show."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import quote

from jobline.store.records import WAITING, Job
from jobline.store.step_runs import run_id


def iso(value: datetime | None) -> str | None:
    """A UTC time as ISO 8601 with milliseconds and a Z."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job) -> dict[str, Any]:
    """The public representation of a job record."""
    progress = job.get("progress") or 0.0
    return {
        "id": job["_id"],
        "type": job["type"],
        "status": job["status"],
        "params": job.get("params"),
        "result": job.get("result"),
        "error": job.get("error"),
        "progress": progress if math.isfinite(progress) else 0.0,
        "progress_message": job.get("progress_message"),
        "attempts": job.get("attempts", 0),
        "queue": job.get("queue"),
        "priority": job.get("priority"),
        "run_at": iso(job.get("run_at")),
        "created_at": iso(job.get("created_at")),
        "started_at": iso(job.get("started_at")),
        "finished_at": iso(job.get("finished_at")),
        "expires_at": iso(job.get("expires_at")),
        "callback_url": job.get("callback_url"),
        "schedule_id": job.get("schedule_id"),
        "workflow_id": job.get("workflow_id"),
        "step": job.get("step"),
        "held_reason": job.get("held_reason") if job["status"] in WAITING else None,
        "webhook": _webhook(job.get("webhook")),
        "files": [output_view(job["_id"], entry) for entry in job.get("files") or []],
    }


def output_view(job_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A file a job made, as the job lists it: where to download it, how to check it, and
    its id (a FileRef another job can read; ``GET /files`` lists it too)."""
    return {
        "name": entry["name"],
        "id": entry["file_id"],
        "size": entry["size"],
        "content_type": entry["content_type"],
        "sha256": entry["sha256"],
        "url": f"/api/v1/jobs/{job_id}/files/{quote(entry['name'], safe='')}",
    }


def _webhook(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """How the job's webhook deliveries went, if it asked for one."""
    if not record:
        return None
    return {
        "attempts": record.get("attempts", 0),
        "last_status": record.get("last_status"),
        "delivered_at": iso(record.get("delivered_at")),
        "last_error": record.get("last_error"),
    }


def workflow_view(workflow: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The public representation of a workflow, with its steps' params, jobs and results.

    ``runs``: the records beside it (``WorkflowStore.runs_of``), keyed by ``_id``.
    """
    params = (runs.get(f"{workflow['_id']}/params") or {}).get("params") or []
    steps = []
    for i, step in enumerate(workflow["steps"]):
        record = runs.get(run_id(workflow["_id"], i, step.get("run", 0))) or {}
        steps.append(_step_view(step, params[i] if i < len(params) else {}, record))
    return {
        "id": workflow["_id"],
        "status": workflow["status"],
        "steps": steps,
        "error": workflow.get("error"),
        "owner": workflow.get("owner"),
        "priority": workflow.get("priority"),
        "callback_url": workflow.get("callback_url"),
        "created_at": iso(workflow.get("created_at")),
        "started_at": iso(workflow.get("started_at")),
        "finished_at": iso(workflow.get("finished_at")),
        "expires_at": iso(workflow.get("expires_at")),
        "webhook": _webhook(workflow.get("webhook")),
    }


def _step_view(
    step: dict[str, Any], params: dict[str, Any], record: dict[str, Any]
) -> dict[str, Any]:
    succeeded = step["status"] == "succeeded"
    return {
        "id": step["id"],
        "type": step["type"],
        "status": step["status"],
        "needs": step["needs"],
        "for_each": step.get("for_each"),
        "params": params,
        "job_ids": record.get("job_ids", []),
        # Jobs of the step that have succeeded, of how many (1 of 1 for a plain step).
        "done": step.get("total", 0) if succeeded else step.get("done", 0),
        "total": step.get("total", 0),
        "run": step.get("run", 0),
        "result": record.get("result") if succeeded else None,
        "error": step.get("error"),
        "started_at": iso(step.get("started_at")),
        "finished_at": iso(step.get("finished_at")),
    }
