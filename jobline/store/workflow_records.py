"""A workflow's record: its statuses, its steps' state, the document it is first stored as."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, DESCENDING

from jobline.core import ids
from jobline.core.errors import JoblineError
from jobline.store.records import now

Workflow = dict[str, Any]


class FlowStatus(StrEnum):
    """Where a workflow is: queued until a step job starts, then running until it ends."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    WAITING = "waiting"  # its needs have not all succeeded
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a step it needs, directly or not, failed or was cancelled


ACTIVE = [str(FlowStatus.QUEUED), str(FlowStatus.RUNNING)]
STEP_ACTIVE = [str(StepStatus.QUEUED), str(StepStatus.RUNNING)]
STEP_ENDED = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED}
)
RETRYABLE = [str(FlowStatus.FAILED), str(FlowStatus.CANCELLED)]

# Lists read a status at a time, everyone's or an owner's, each an index range newest
# first (see WorkflowStore.list); the sweeper's look at stalled ones, a status at a time.
INDEXES = (
    [("status", ASCENDING), ("_id", DESCENDING)],
    [("owner", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)],
)
# An owner's lists read it before they went a status at a time; dropped at start.
RETIRED_INDEXES = ("owner_1__id_-1",)


class WorkflowNotFound(JoblineError):
    """No workflow with that id (or not one the caller may see)."""

    status = 404
    title = "Workflow not found"


def new_workflow(
    steps: Sequence[dict[str, Any]],
    *,
    owner: str | None,
    priority: int,
    callback_url: str | None = None,
) -> Workflow:
    """A workflow record as it is first stored: every step waiting, run 0.

    Its steps' params are stored apart (``params_record``), so the record each
    step job updates stays small.
    """
    t = now()
    return {
        "_id": ids.new_id(),
        "owner": owner,
        "status": str(FlowStatus.QUEUED),
        "priority": priority,
        "callback_url": callback_url,
        "steps": [
            {
                "id": s["id"],
                "type": s["type"],
                "needs": list(s.get("needs") or []),
                "for_each": s.get("for_each"),
                **fresh_step(0),
            }
            for s in steps
        ],
        "error": None,
        "version": 0,
        "created_at": t,
        "updated_at": t,
        "started_at": None,
        "finished_at": None,
        "expires_at": None,
    }


def params_record(workflow_id: str, steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The steps' params, kept beside the workflow's record (see jobline.store.step_runs)."""
    return {"_id": f"{workflow_id}/params", "params": [s.get("params") or {} for s in steps]}


def fresh_step(run: int) -> dict[str, Any]:
    """The state of a step that has not started this run."""
    return {
        "status": str(StepStatus.WAITING),
        "run": run,
        "total": 0,
        "done": 0,
        "error": None,
        "started_at": None,
        "finished_at": None,
    }


def step_is(i: int, run: int, *statuses: str) -> dict[str, Any]:
    """The condition that step ``i`` is in ``run`` and in one of ``statuses``."""
    return {f"steps.{i}.run": run, f"steps.{i}.status": {"$in": list(statuses)}}
