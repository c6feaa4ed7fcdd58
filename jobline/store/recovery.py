"""Recovery: the queries and hand-overs of the sweeper, delayed jobs and webhook records.

Jobs whose worker stopped renewing its lease, waiting jobs whose message was
lost, scheduled jobs held back from the broker until they are due.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from jobline.store.collection import JobCollection
from jobline.store.mongo import unavailable_as_error
from jobline.store.records import WAITING, Job, Status, now


class Recovery(JobCollection):
    """What the sweeper reads and the conditional updates with which it hands jobs on."""

    @unavailable_as_error
    def expired_leases(self, limit: int = 500) -> Iterator[Job]:
        """Running jobs whose worker stopped renewing the lease."""
        return self.jobs.find({"status": str(Status.RUNNING), "lease_until": {"$lt": now()}}).limit(
            limit
        )

    @unavailable_as_error
    def requeue_many(self, jobs: Sequence[tuple[Job, str]]) -> list[Job]:
        """Hand running jobs whose worker is gone back to the queue, each with a new task id.

        Returns the jobs requeued, as they now are; one whose worker renewed its
        lease or that ended meanwhile is left out.
        """
        t = now()
        return self._hand_on(
            (
                {
                    "_id": job["_id"],
                    "status": str(Status.RUNNING),
                    "attempts": job["attempts"],
                    "lease_until": {"$lt": t},
                },
                {
                    "status": str(Status.QUEUED),
                    "task_id": task_id,
                    "updated_at": t,
                    "lease_until": None,
                },
                job,
            )
            for job, task_id in jobs
        )

    @unavailable_as_error
    def stale_waiting(
        self, older_than: timedelta, queues: list[str] | None = None, limit: int = 500
    ) -> Iterator[Job]:
        """Waiting jobs untouched for ``older_than`` past when they were due (in ``queues``)."""
        cutoff = now() - older_than
        # One query a status and queue, each an equality: with $in or a top-level
        # $or SecantusDB reads the whole collection (a second at 30,000 jobs, under
        # its one lock, every sweep). A queued job is due when queued; a scheduled
        # or retrying one at its run_at.
        for status in WAITING:
            for queue in queues if queues is not None else [None]:
                query: dict[str, Any] = {"status": str(status), "updated_at": {"$lt": cutoff}}
                if status is not Status.QUEUED:
                    query["run_at"] = {"$lt": cutoff}
                if queue is not None:
                    query["queue"] = queue
                # Parked behind a limit: its message waits in Redis (engine.limits).
                query["held_reason"] = None
                due = [
                    job
                    for job in self.jobs.find(query).limit(limit)
                    if job.get("run_at") is None or job["run_at"] < cutoff
                ]
                yield from due
                limit -= len(due)
                if limit <= 0:
                    return

    @unavailable_as_error
    def touch(self, job: Job, task_id: str) -> bool:
        """Note that a waiting job's message was published again.

        It may keep its task id, so the time it was read with says whether
        another sweep published it meanwhile.
        """
        done = self.jobs.update_one(
            {
                "_id": job["_id"],
                "status": job["status"],
                "attempts": job["attempts"],
                "updated_at": job["updated_at"],
            },
            {"$set": {"updated_at": now(), "task_id": task_id}},
        )
        return done.modified_count == 1

    @unavailable_as_error
    def touch_many(self, jobs: Sequence[tuple[Job, str]]) -> list[Job]:
        """Note that waiting jobs' messages were published again, each with a new task id.

        Returns the jobs touched; one claimed, cancelled or touched by another
        sweeper meanwhile is left out: the task id it was read with must still
        be its own, or two sweepers would both send it.
        """
        t = now()
        return self._hand_on(
            (
                {
                    "_id": job["_id"],
                    "status": job["status"],
                    "attempts": job["attempts"],
                    "task_id": job.get("task_id"),
                },
                {"updated_at": t, "task_id": task_id},
                job,
            )
            for job, task_id in jobs
        )

    @unavailable_as_error
    def held_until(self, until: datetime, limit: int = 500) -> Iterator[Job]:
        """Scheduled jobs held back from the broker that are due by ``until``."""
        return self.jobs.find(
            {"status": str(Status.SCHEDULED), "held": True, "run_at": {"$lte": until}}
        ).limit(limit)

    @unavailable_as_error
    def release_many(self, jobs: Sequence[tuple[Job, str]]) -> list[Job]:
        """Mark held jobs as handed to the broker, each with its new task id, in one round trip.

        Returns the jobs released, as they now are (queued if already due); one
        cancelled or released by another sweeper meanwhile is left out.
        """
        t = now()
        return self._hand_on(
            (
                {"_id": job["_id"], "status": str(Status.SCHEDULED), "held": True},
                {
                    "held": False,
                    "task_id": task_id,
                    "updated_at": t,
                    **({"status": str(Status.QUEUED)} if job["run_at"] <= t else {}),
                },
                job,
            )
            for job, task_id in jobs
        )

    def _hand_on(self, changes: Iterable[tuple[dict[str, Any], dict[str, Any], Job]]) -> list[Job]:
        """Conditional updates that each give a job a new ``task_id``, in one bulk write.

        Returns the jobs whose update was made, with its changes applied.
        """
        changed: list[Job] = []
        updates: list[UpdateOne] = []
        for filter_, fields, job in changes:
            updates.append(UpdateOne(filter_, {"$set": fields}))
            changed.append({**job, **fields})
        if not updates:
            return []
        try:
            if self.jobs.bulk_write(updates, ordered=False).modified_count == len(updates):
                return changed
        except BulkWriteError:  # some writes failed; the others may have been made
            pass
        # Some had moved on: a bulk write counts what it changed, not which, so
        # each job says whether it carries the task id given here. Point reads:
        # $in would make the embedded server scan the collection.
        return [
            job
            for job in changed
            if (found := self.jobs.find_one({"_id": job["_id"]}, {"task_id": 1})) is not None
            and found.get("task_id") == job["task_id"]
        ]

    @unavailable_as_error
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
