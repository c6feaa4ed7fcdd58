"""The named transitions of a job: each one conditional update from a named state.

A duplicate message, a late retry or a worker that lost its lease therefore
matches nothing and changes nothing: a job reaches a terminal state once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from jobline.core.errors import InvalidTransition, KeyInUse
from jobline.store.collection import HOSTNAME, JobCollection
from jobline.store.mongo import mine, unavailable_as_error
from jobline.store.records import WAITING, Job, Status, now


class Transitions(JobCollection):
    """Submission, claim, heartbeat, outcome, cancel and retry of one job."""

    @unavailable_as_error
    def insert(self, job: Job) -> Job:
        """Record a newly accepted job; KeyInUse if its idempotency key is taken.

        Returns once the job is written; jobs submitted meanwhile by other threads
        of this process are written in the same round trip (see group_commit).
        """
        try:
            self.inserts.insert(job)
        except DuplicateKeyError as exc:
            if job.get("idempotency_key") is None:
                raise
            raise KeyInUse(job["idempotency_key"]) from exc
        return job

    @unavailable_as_error
    def insert_many(self, jobs: Sequence[Job]) -> None:
        """Record many newly accepted jobs in one round trip."""
        if jobs:
            self.accepted.insert_many(jobs, ordered=False)

    @unavailable_as_error
    def find_by_key(self, key: str, submitted_by: str | None = None) -> Job | None:
        """The job ``submitted_by`` (None: with auth off) made with this idempotency key."""
        return self.jobs.find_one({"idempotency_key": key, "owner": submitted_by})

    @unavailable_as_error
    def discard(self, job_ids: Sequence[str]) -> int:
        """Remove jobs that were never published (their submission was refused)."""
        result = self.jobs.delete_many(
            {"_id": {"$in": list(job_ids)}, "status": {"$in": [str(s) for s in WAITING]}}
        )
        return result.deleted_count

    @unavailable_as_error
    def claim(
        self,
        job_id: str,
        task_id: str | None = None,
        admit: Callable[[Job], None] | None = None,
        record: Job | None = None,
    ) -> Job | None:
        """Move a waiting job (or one whose lease ran out) to running as a new attempt.

        Returns the job as claimed, or None when this delivery must not run it:
        the job is finished, cancelled, unknown, or held by a live worker.
        ``admit`` sees a claimable job first and may raise to keep it waiting
        (the engine's limits), so a refusal costs no attempt and no extra read.
        ``record`` is the job as it was published (its message carries it): a
        queued job never held back is then claimed with one conditional update
        on the status and attempt it was published with, and nothing is read.
        Any other case (scheduled, retrying, held, a lease that ran out, a
        record that moved on) reads the job first.
        """
        admitted = False
        if record is not None and record.get("status") == Status.QUEUED:
            if admit is not None:
                admit(record)
                admitted = True
            # A job parked meanwhile passed the limits above too: its hold ends here.
            claimed = self.started({**record, "_id": job_id}, task_id)
            if self.record_start(claimed):
                return claimed
        changes = self._claim_changes(task_id)
        job = self.jobs.find_one({"_id": job_id})
        if job is None or not self._claimable(job):
            return None
        if admit is not None and not admitted:
            admit(job)
        if job.get("held_reason"):
            changes["held_reason"] = None
        result = self.jobs.update_one(
            {"_id": job_id, "status": job["status"], "attempts": job["attempts"]},
            {"$set": changes, "$inc": {"attempts": 1}},
        )
        if result.modified_count != 1:
            return None  # someone else moved it first
        job.update(changes, attempts=job["attempts"] + 1)
        return job

    def started(self, record: Job, task_id: str | None = None) -> Job:
        """The job as claiming it from its published ``record`` makes it, not yet written.

        ``record_start`` writes it; ``start_and_succeed`` writes it with the
        attempt's result, for a pure job that ended before its start was written.
        """
        attempts = int(record.get("attempts") or 0)
        changes = {**self._claim_changes(task_id), "held_reason": None}
        return {**record, **changes, "attempts": attempts + 1}

    @unavailable_as_error
    def record_start(self, job: Job) -> bool:
        """Write the claim ``started`` made: False if the job is no longer queued at the
        attempt before (cancelled, deleted, or claimed by another delivery)."""
        t = now()
        changes = {**self._start_fields(job), "updated_at": t, "lease_until": t + self.lease}
        return self._from_queued(job, changes)

    @unavailable_as_error
    def start_and_succeed(self, job: Job, result: Any) -> bool:
        """Record a pure job's start and its result in one write (see ``started``)."""
        changes = {**self._start_fields(job), **self._succeeded(result)}
        return self._from_queued(job, changes)

    def _from_queued(self, job: Job, changes: dict[str, Any]) -> bool:
        # The filter is the status index's leading fields (see lists); a real mongod uses _id.
        done = self.jobs.update_one(
            {"_id": job["_id"], "status": str(Status.QUEUED), "attempts": job["attempts"] - 1},
            {"$set": changes, "$inc": {"attempts": 1}},
        )
        return done.modified_count == 1

    @staticmethod
    def _start_fields(job: Job) -> dict[str, Any]:
        fields = ("status", "started_at", "worker", "progress", "progress_message", "held_reason")
        started = {name: job.get(name) for name in fields}
        if job.get("task_id") is not None:
            started["task_id"] = job["task_id"]
        return started

    def _claim_changes(self, task_id: str | None) -> dict[str, Any]:
        t = now()
        changes: dict[str, Any] = {
            "status": str(Status.RUNNING),
            "started_at": t,
            "updated_at": t,
            "lease_until": t + self.lease,
            "worker": HOSTNAME,
            "progress": 0.0,
            "progress_message": None,
        }
        if task_id is not None:
            changes["task_id"] = task_id
        return changes

    @unavailable_as_error
    def note_held(self, job: Job, reason: str) -> bool:
        """Say why a waiting job is held back; not a status change, and written once per hold."""
        done = self.jobs.update_one(
            {"_id": job["_id"], "status": job["status"], "attempts": job["attempts"]},
            {"$set": {"held_reason": reason}},
        )
        return done.modified_count == 1

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

    @unavailable_as_error
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

    @unavailable_as_error
    def succeed(self, job_id: str, attempt: int, result: Any) -> bool:
        """Record the result of a running attempt; False if the attempt lost the job."""
        done = self.jobs.update_one(
            self._running(job_id, attempt), {"$set": self._succeeded(result)}
        )
        return done.modified_count == 1

    def _succeeded(self, result: Any) -> dict[str, Any]:
        t = now()
        return {
            "status": str(Status.SUCCEEDED),
            "result": result,
            "error": None,
            "progress": 1.0,
            "finished_at": t,
            "updated_at": t,
            "lease_until": None,
            "expires_at": self._expiry(t),
        }

    @unavailable_as_error
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

    @unavailable_as_error
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

    @unavailable_as_error
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

    @unavailable_as_error
    def restart(self, job_id: str, task_id: str, owner: str | None = None) -> Job:
        """Queue a failed or cancelled job again, as a fresh attempt; not a workflow's step,
        whose workflow has moved on without it (retrying the workflow runs it again)."""
        job = self.get(job_id, owner)
        if job.get("workflow_id"):
            raise InvalidTransition(
                f"job {job_id} is step {job.get('step')!r} of workflow {job['workflow_id']}; "
                f"retry the workflow: POST /api/v1/workflows/{job['workflow_id']}/retry"
            )
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

    @unavailable_as_error
    def delete(self, job_id: str, owner: str | None = None) -> bool:
        return self.jobs.delete_one(mine({"_id": job_id}, owner)).deleted_count == 1
