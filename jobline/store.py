"""The MongoDB job store: every query on jobs lives here, and every status change.

Each transition is one conditional ``update_one`` whose filter names the state
(and, for a running job, the attempt) it starts from. A duplicate message, a
late retry or a worker that lost its lease therefore matches nothing and
changes nothing: a job reaches a terminal state once.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, OperationFailure

from jobline import ids
from jobline.errors import InvalidTransition, JobNotFound, StoreUnavailable
from jobline.settings import Settings


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
P = ParamSpec("P")
R = TypeVar("R")


def now() -> datetime:
    """The current UTC time, at MongoDB's millisecond precision."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _unavailable_as_error(method: Callable[P, R]) -> Callable[P, R]:
    """Turn a lost MongoDB connection into StoreUnavailable."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise StoreUnavailable(f"MongoDB unreachable: {type(exc).__name__}") from exc

    return wrapper


@dataclass(frozen=True)
class Page:
    items: list[Job]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a page continues after; ValueError if the cursor is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        before = json.loads(raw)["before"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(before, str) or not ids.is_id(before):
        raise ValueError("invalid cursor")
    return before


class JobStore:
    """Jobs in one MongoDB collection, and the named transitions between states."""

    def __init__(self, settings: Settings, client: MongoClient[Job] | None = None) -> None:
        timeout_ms = int(settings.connect_timeout_seconds * 1000)
        self.client: MongoClient[Job] = client or MongoClient(
            settings.mongo_url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="jobline",
        )
        self.db = self.client[settings.mongo_db]
        self.jobs: Collection[Job] = self.db["jobs"]
        self.lease = timedelta(seconds=settings.lease_seconds)

    # -- set-up and health -------------------------------------------------

    @_unavailable_as_error
    def ensure_indexes(self) -> None:
        """Create the indexes listing, filtering and the sweeper rely on."""
        # _id is a UUIDv7, so {_id: -1} is newest first.
        self.jobs.create_index([("status", ASCENDING), ("_id", DESCENDING)])
        self.jobs.create_index([("type", ASCENDING), ("_id", DESCENDING)])
        self.jobs.create_index([("type", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)])
        # Finished jobs carry expires_at when retention is configured.
        self.jobs.create_index("expires_at", expireAfterSeconds=0)

    def ping(self) -> None:
        """Raise StoreUnavailable unless MongoDB answers."""
        try:
            self.client.admin.command("ping")
        except (ConnectionFailure, OperationFailure) as exc:
            raise StoreUnavailable(f"MongoDB unreachable: {type(exc).__name__}") from exc

    def close(self) -> None:
        self.client.close()

    # -- reads ---------------------------------------------------------------

    @_unavailable_as_error
    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFound if there is none."""
        job = self.jobs.find_one({"_id": job_id}) if ids.is_id(job_id) else None
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    @_unavailable_as_error
    def list(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        type: str | None = None,
        status: Status | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Page:
        """Jobs newest first, one page at a time (keyset pagination on the id)."""
        query: dict[str, Any] = {}
        if type is not None:
            query["type"] = type
        if status is not None:
            query["status"] = str(status)
        id_range: dict[str, str] = {}
        if cursor is not None:
            id_range["$lt"] = decode_cursor(cursor)
        if created_before is not None:
            bound = ids.boundary_id(int(created_before.timestamp() * 1000), upper=False)
            id_range["$lt"] = min(bound, id_range.get("$lt", bound))
        if created_after is not None:
            id_range["$gt"] = ids.boundary_id(int(created_after.timestamp() * 1000), upper=True)
        if id_range:
            query["_id"] = id_range
        items = list(self.jobs.find(query).sort("_id", DESCENDING).limit(limit + 1))
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1]["_id"]) if more else None)

    # -- transitions -----------------------------------------------------------

    @_unavailable_as_error
    def insert(self, job: Job) -> Job:
        """Record a newly accepted job."""
        self.jobs.insert_one(job)
        return job

    @_unavailable_as_error
    def discard(self, job_id: str) -> bool:
        """Remove a job that was never published (its submission was refused)."""
        result = self.jobs.delete_one({"_id": job_id, "status": {"$in": list(WAITING)}})
        return result.deleted_count == 1

    @_unavailable_as_error
    def claim(self, job_id: str, task_id: str | None = None) -> Job | None:
        """Move a waiting job (or one whose lease ran out) to running as a new attempt.

        Returns the job as claimed, or None when this delivery must not run it:
        the job is finished, cancelled, unknown, or held by a live worker.
        """
        job = self.jobs.find_one({"_id": job_id})
        if job is None or not self._claimable(job):
            return None
        t = now()
        changes = {
            "status": str(Status.RUNNING),
            "started_at": t,
            "updated_at": t,
            "lease_until": t + self.lease,
            "worker": socket.gethostname(),
            "progress": 0.0,
            "progress_message": None,
        }
        if task_id is not None:
            changes["task_id"] = task_id
        result = self.jobs.update_one(
            {"_id": job_id, "status": job["status"], "attempts": job["attempts"]},
            {"$set": changes, "$inc": {"attempts": 1}},
        )
        if result.modified_count != 1:
            return None  # someone else moved it first
        job.update(changes, attempts=job["attempts"] + 1)
        return job

    def _claimable(self, job: Job) -> bool:
        status = Status(job["status"])
        if status is Status.RUNNING:
            lease = job.get("lease_until")
            return lease is not None and lease < now()
        if status is Status.SCHEDULED:
            run_at = job.get("run_at")
            return run_at is None or run_at <= now()
        return status in WAITING

    def _running(self, job_id: str, attempt: int | None) -> dict[str, Any]:
        query: dict[str, Any] = {"_id": job_id, "status": str(Status.RUNNING)}
        if attempt is not None:
            query["attempts"] = attempt
        return query

    @_unavailable_as_error
    def heartbeat(
        self,
        job_id: str,
        attempt: int,
        progress: float | None = None,
        message: str | None = None,
    ) -> bool:
        """Renew the lease (and record progress); False if this attempt no longer owns the job."""
        t = now()
        changes: dict[str, Any] = {"lease_until": t + self.lease}
        if progress is not None:
            changes.update(progress=progress, progress_message=message, updated_at=t)
        result = self.jobs.update_one(self._running(job_id, attempt), {"$set": changes})
        return result.matched_count == 1

    @_unavailable_as_error
    def succeed(self, job_id: str, attempt: int, result: Any) -> bool:
        """Record the result of a running attempt; False if the attempt lost the job."""
        t = now()
        done = self.jobs.update_one(
            self._running(job_id, attempt),
            {
                "$set": {
                    "status": str(Status.SUCCEEDED),
                    "result": result,
                    "error": None,
                    "progress": 1.0,
                    "finished_at": t,
                    "updated_at": t,
                    "lease_until": None,
                }
            },
        )
        return done.modified_count == 1

    @_unavailable_as_error
    def fail(
        self,
        job_id: str,
        attempt: int | None,
        error: dict[str, Any],
        *,
        task_id: str | None = None,
    ) -> bool:
        """Record the final failure of a running attempt.

        ``attempt`` None means whichever attempt the delivery ``task_id`` is running.
        """
        query = self._running(job_id, attempt)
        if task_id is not None:
            query["task_id"] = task_id
        t = now()
        done = self.jobs.update_one(
            query,
            {
                "$set": {
                    "status": str(Status.FAILED),
                    "error": error,
                    "finished_at": t,
                    "updated_at": t,
                    "lease_until": None,
                }
            },
        )
        return done.modified_count == 1

    @_unavailable_as_error
    def retry_later(self, job_id: str, attempt: int, error: dict[str, Any], at: datetime) -> bool:
        """A running attempt failed in a way worth retrying: wait until ``at``."""
        done = self.jobs.update_one(
            self._running(job_id, attempt),
            {
                "$set": {
                    "status": str(Status.RETRYING),
                    "error": error,
                    "run_at": at,
                    "updated_at": now(),
                    "lease_until": None,
                }
            },
        )
        return done.modified_count == 1

    @_unavailable_as_error
    def cancel(self, job_id: str) -> Job:
        """Cancel an unfinished job and return it as it was before; finished jobs are kept."""
        for _ in range(5):
            job = self.get(job_id)
            if Status(job["status"]).finished:
                return job
            t = now()
            done = self.jobs.update_one(
                {"_id": job_id, "status": job["status"], "attempts": job["attempts"]},
                {
                    "$set": {
                        "status": str(Status.CANCELLED),
                        "finished_at": t,
                        "updated_at": t,
                        "lease_until": None,
                    }
                },
            )
            if done.modified_count == 1:
                return job
        raise InvalidTransition(f"job {job_id} kept changing; try again")

    @_unavailable_as_error
    def restart(self, job_id: str, task_id: str) -> Job:
        """Queue a failed or cancelled job again, as a fresh attempt."""
        job = self.get(job_id)
        if job["status"] not in (Status.FAILED, Status.CANCELLED):
            raise InvalidTransition(
                f"job {job_id} is {job['status']}; only failed or cancelled jobs can be retried"
            )
        changes = {
            "status": str(Status.QUEUED),
            "task_id": task_id,
            "result": None,
            "error": None,
            "progress": 0.0,
            "progress_message": None,
            "finished_at": None,
            "started_at": None,
            "run_at": None,
            "updated_at": now(),
            "expires_at": None,
        }
        done = self.jobs.update_one(
            {"_id": job_id, "status": job["status"], "attempts": job["attempts"]},
            {"$set": changes},
        )
        if done.modified_count != 1:
            raise InvalidTransition(f"job {job_id} changed while being retried")
        job.update(changes)
        return job

    @_unavailable_as_error
    def delete(self, job_id: str) -> bool:
        return self.jobs.delete_one({"_id": job_id}).deleted_count == 1

    # -- the sweeper's queries ---------------------------------------------------

    @_unavailable_as_error
    def expired_leases(self, limit: int = 500) -> Iterator[Job]:
        """Running jobs whose worker stopped renewing the lease."""
        return self.jobs.find({"status": str(Status.RUNNING), "lease_until": {"$lt": now()}}).limit(
            limit
        )

    @_unavailable_as_error
    def requeue(self, job: Job, task_id: str) -> bool:
        """Hand a running job whose worker is gone back to the queue."""
        done = self.jobs.update_one(
            {
                "_id": job["_id"],
                "status": str(Status.RUNNING),
                "attempts": job["attempts"],
                "lease_until": {"$lt": now()},
            },
            {
                "$set": {
                    "status": str(Status.QUEUED),
                    "task_id": task_id,
                    "updated_at": now(),
                    "lease_until": None,
                }
            },
        )
        return done.modified_count == 1

    @_unavailable_as_error
    def stale_waiting(self, older_than: timedelta, limit: int = 500) -> Iterator[Job]:
        """Waiting jobs untouched for ``older_than`` past when they were due."""
        cutoff = now() - older_than
        return self.jobs.find(
            {
                "status": {"$in": [str(s) for s in WAITING]},
                "updated_at": {"$lt": cutoff},
                "$or": [{"run_at": None}, {"run_at": {"$lt": cutoff}}],
            }
        ).limit(limit)

    @_unavailable_as_error
    def touch(self, job: Job, task_id: str) -> bool:
        """Note that a waiting job's message was published again."""
        done = self.jobs.update_one(
            {"_id": job["_id"], "status": job["status"], "attempts": job["attempts"]},
            {"$set": {"updated_at": now(), "task_id": task_id}},
        )
        return done.modified_count == 1


def new_job(
    type: str,
    params: dict[str, Any],
    *,
    queue: str = "default",
    run_at: datetime | None = None,
    priority: int | None = None,
) -> Job:
    """A job record as it is first stored."""
    t = now()
    scheduled = run_at is not None and run_at > t
    return {
        "_id": ids.new_id(),
        "type": type,
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
