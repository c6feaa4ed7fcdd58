"""A job's record: its statuses, and the document a newly accepted job is stored as."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from jobline.core import ids
from jobline.store.paging import at_ms


class Status(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
WAITING = (Status.QUEUED, Status.SCHEDULED, Status.RETRYING)
UNFINISHED = (*WAITING, Status.RUNNING)

Job = dict[str, Any]


def now() -> datetime:
    """The current UTC time, at MongoDB's millisecond precision."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def new_job(
    type: str,
    params: dict[str, Any],
    *,
    queue: str = "default",
    run_at: datetime | None = None,
    priority: int | None = None,
    owner: str | None = None,
    job_id: str | None = None,
) -> Job:
    """A job record as it is first stored (under ``job_id`` if given, a fresh id otherwise)."""
    job_id = job_id or ids.new_id()
    # created_at is the id's own millisecond: lists window on either (see paging).
    t = at_ms(ids.timestamp_ms(job_id))
    scheduled = run_at is not None and run_at > t
    return {
        "_id": job_id,
        "type": type,
        "owner": owner,
        "status": str(Status.SCHEDULED if scheduled else Status.QUEUED),
        "params": params,
        "result": None,
        "error": None,
        "progress": 0.0,
        "progress_message": None,
        "attempts": 0,
        "queue": queue,
        "priority": priority,
        "run_at": run_at if scheduled else None,
        "task_id": ids.new_id(),
        "created_at": t,
        "updated_at": t,
        "started_at": None,
        "finished_at": None,
        "lease_until": None,
    }
