"""The MongoDB job store: every query on jobs lives here, and every status change.

Each transition is one conditional ``update_one`` whose filter names the state
(and, for a running job, the attempt) it starts from. A duplicate message, a
late retry or a worker that lost its lease therefore matches nothing and
changes nothing: a job reaches a terminal state once.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure

from jobline import ids
from jobline.errors import InvalidTransition, JobNotFound, KeyInUse, StoreUnavailable
from jobline.paging import Page, Span, Window, at_ms, encode_cursor, windows
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

# A list query with type or status is equality on an index's prefix and a range
# on _id (a UUIDv7: {_id: -1} is newest first). One without is a created_at
# range: SecantusDB scans the collection for a range on _id alone.
LIST_INDEXES = (
    [("type", ASCENDING), ("_id", DESCENDING)],
    [("status", ASCENDING), ("_id", DESCENDING)],
    [("type", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)],
    [("created_at", DESCENDING), ("_id", DESCENDING)],
    # A key that is not an admin's lists only its owner's jobs.
    [("owner", ASCENDING), ("_id", DESCENDING)],
    [("owner", ASCENDING), ("type", ASCENDING), ("_id", DESCENDING)],
)
NEWEST_FIRST = [("_id", DESCENDING)]
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
        self.result_ttl = timedelta(seconds=settings.result_ttl) if settings.result_ttl else None

    # -- set-up and health -------------------------------------------------

    @_unavailable_as_error
    def ensure_indexes(self) -> None:
        """Create the indexes listing, filtering and the sweeper rely on."""
        # _id is a UUIDv7, so {_id: -1} is newest first.
        for keys in LIST_INDEXES:
            self.jobs.create_index(keys)
        # Finished jobs carry expires_at when retention is configured.
        self.jobs.create_index("expires_at", expireAfterSeconds=0)
        # Two concurrent requests with one Idempotency-Key: the second insert fails.
        self.jobs.create_index("idempotency_key", unique=True, sparse=True)

    def ping(self) -> None:
        """Raise StoreUnavailable unless MongoDB answers."""
        try:
            self.client.admin.command("ping")
        except (ConnectionFailure, OperationFailure) as exc:
            raise StoreUnavailable(f"MongoDB unreachable: {type(exc).__name__}") from exc

    def close(self) -> None:
        self.client.close()

    def _expiry(self, finished: datetime) -> datetime | None:
        """When a job finished at ``finished`` is removed by the TTL index (None: never)."""
        return finished + self.result_ttl if self.result_ttl else None

    # -- reads ---------------------------------------------------------------

    @_unavailable_as_error
    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id (owned by ``owner``, unless None); JobNotFound if there is none.

        Another owner's job is not found, exactly like a missing one, so ids leak nothing.
        """
        job = self.jobs.find_one(_mine({"_id": job_id}, owner)) if ids.is_id(job_id) else None
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
        owner: str | None = None,
    ) -> Page:
        """Jobs newest first, one page at a time; see jobline.paging for how."""
        equal: dict[str, Any] = _mine({}, owner)
        if type is not None:
            equal["type"] = type
        if status is not None:
            equal["status"] = str(status)
        span = Span.of(cursor, created_after, created_before)
        items: list[Job] = []
        if not equal:
            below = span.below
            inside, span = span.split_millisecond()
            if inside is not None and below is not None:
                same = self.jobs.find({"created_at": at_ms(inside)}).sort(NEWEST_FIRST)
                items += [job for job in same if job["_id"] < below][: limit + 1]
        for window in windows(span, int(now().timestamp() * 1000)):
            if len(items) > limit:
                break
            query, order = _window_query(equal, window)
            items += self.jobs.find(query).sort(order).limit(limit + 1 - len(items))
        if len(items) > limit:
            return Page(items[:limit], encode_cursor(items[limit - 1]["_id"]))
        return Page(items, None)

    # -- transitions -----------------------------------------------------------

    @_unavailable_as_error
    def insert(self, job: Job) -> Job:
        """Record a newly accepted job; KeyInUse if its idempotency key is taken."""
        try:
            self.jobs.insert_one(job)
        except DuplicateKeyError as exc:
            if job.get("idempotency_key") is None:
                raise
            raise KeyInUse(job["idempotency_key"]) from exc
        return job

    @_unavailable_as_error
    def insert_many(self, jobs: Sequence[Job]) -> None:
        """Record many newly accepted jobs in one round trip."""
        if jobs:
            self.jobs.insert_many(jobs, ordered=False)

    @_unavailable_as_error
    def find_by_key(self, key: str, submitted_by: str | None = None) -> Job | None:
        """The job ``submitted_by`` (None: with auth off) made with this idempotency key."""
        return self.jobs.find_one({"idempotency_key": key, "owner": submitted_by})

    @_unavailable_as_error
    def discard(self, job_ids: Sequence[str]) -> int:
        """Remove jobs that were never published (their submission was refused)."""
        result = self.jobs.delete_many(
            {"_id": {"$in": list(job_ids)}, "status": {"$in": [str(s) for s in WAITING]}}
        )
        return result.deleted_count

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
                    "expires_at": self._expiry(t),
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
                    "expires_at": self._expiry(t),
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
    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel an unfinished job and return it as it was before; finished jobs are kept."""
        for _ in range(5):
            job = self.get(job_id, owner)
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
                        "expires_at": self._expiry(t),
                    }
                },
            )
            if done.modified_count == 1:
                return job
        raise InvalidTransition(f"job {job_id} kept changing; try again")

    @_unavailable_as_error
    def restart(self, job_id: str, task_id: str, owner: str | None = None) -> Job:
        """Queue a failed or cancelled job again, as a fresh attempt."""
        job = self.get(job_id, owner)
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
    def delete(self, job_id: str, owner: str | None = None) -> bool:
        return self.jobs.delete_one(_mine({"_id": job_id}, owner)).deleted_count == 1

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

    # -- delayed jobs and webhooks (see jobline.scheduling, jobline.webhooks) ---

    @_unavailable_as_error
    def held_until(self, until: datetime, limit: int = 500) -> Iterator[Job]:
        """Scheduled jobs held back from the broker that are due by ``until``."""
        return self.jobs.find(
            {"status": str(Status.SCHEDULED), "held": True, "run_at": {"$lte": until}}
        ).limit(limit)

    @_unavailable_as_error
    def release(self, job: Job, task_id: str) -> Job | None:
        """Mark a held job as handed to the broker (queued if already due); None if it moved."""
        t = now()
        changes: dict[str, Any] = {"held": False, "task_id": task_id, "updated_at": t}
        if job["run_at"] <= t:
            changes["status"] = str(Status.QUEUED)
        done = self.jobs.update_one(
            {"_id": job["_id"], "status": str(Status.SCHEDULED), "held": True},
            {"$set": changes},
        )
        return {**job, **changes} if done.modified_count == 1 else None

    @_unavailable_as_error
    def record_webhook(
        self,
        job_id: str,
        *,
        last_status: int | None,
        last_error: str | None,
        delivered: bool,
    ) -> None:
        """Count one webhook delivery attempt on the job and note how it went."""
        changes: dict[str, Any] = {
            "webhook.last_status": last_status,
            "webhook.last_error": last_error,
            "webhook.last_attempt_at": now(),
        }
        if delivered:
            changes["webhook.delivered_at"] = changes["webhook.last_attempt_at"]
        self.jobs.update_one({"_id": job_id}, {"$set": changes, "$inc": {"webhook.attempts": 1}})


def _mine(query: dict[str, Any], owner: str | None) -> dict[str, Any]:
    """``query`` narrowed to one owner's jobs; None means every job (admins, auth off)."""
    if owner is not None:
        query["owner"] = owner
    return query


def _window_query(equal: dict[str, Any], window: Window) -> tuple[dict[str, Any], list[Any]]:
    """The filter and order that read one window of a list (see LIST_INDEXES)."""
    if equal:
        id_range = window.id_range()
        return {**equal, "_id": id_range} if id_range else dict(equal), NEWEST_FIRST
    created = window.created_range()
    order = [("created_at", DESCENDING), *NEWEST_FIRST]
    return ({"created_at": created} if created else {}), order


def new_job(
    type: str,
    params: dict[str, Any],
    *,
    queue: str = "default",
    run_at: datetime | None = None,
    priority: int | None = None,
    owner: str | None = None,
) -> Job:
    """A job record as it is first stored."""
    job_id = ids.new_id()
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
