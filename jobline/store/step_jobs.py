"""The jobs of a workflow's steps: found, inserted and cancelled a step at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from jobline.store.mongo import unavailable_as_error
from jobline.store.records import WAITING, Job, Status, now


class StepJobs:
    """Queries on the ``jobs`` collection by workflow step, each an index range on ``_id``."""

    def __init__(self, db: Database[Any], result_ttl: timedelta | None = None) -> None:
        self.jobs: Collection[Job] = db["jobs"]
        self.result_ttl = result_ttl

    def _of_step(self, workflow_id: str, step: dict[str, Any]) -> dict[str, Any]:
        # A range on _id uses its index (the step's ids were made together);
        # {$in: [1,000 ids]} makes the embedded server scan the collection.
        job_ids = step["job_ids"]
        return {
            "_id": {"$gte": min(job_ids), "$lte": max(job_ids)},
            "workflow_id": workflow_id,
            "step": step["id"],
            "run": step["run"],
        }

    @unavailable_as_error
    def step_jobs(
        self, workflow_id: str, step: dict[str, Any], fields: Sequence[str] | None = None
    ) -> list[Job]:
        """The jobs of a step's current run, in item order."""
        if not step["job_ids"]:
            return []
        projection = {f: 1 for f in (*fields, "item")} if fields is not None else None
        found = list(self.jobs.find(self._of_step(workflow_id, step), projection))
        return sorted(found, key=lambda job: job.get("item") or 0)

    @unavailable_as_error
    def insert_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        """Insert a step's jobs; those already there (a repeated release) are left alone.

        Returns the jobs this call inserted.
        """
        if not jobs:
            return []
        try:
            self.jobs.insert_many(jobs, ordered=False)
        except BulkWriteError as exc:
            taken = {e["index"] for e in exc.details.get("writeErrors", []) if e["code"] == 11000}
            if len(taken) != len(exc.details.get("writeErrors", [])):
                raise
            return [job for n, job in enumerate(jobs) if n not in taken]
        return list(jobs)

    @unavailable_as_error
    def cancel_waiting_jobs(self, workflow_id: str, step: dict[str, Any]) -> int:
        """Cancel the step's jobs that have not started, in one update; how many."""
        if not step["job_ids"]:
            return 0
        t = now()
        query = {**self._of_step(workflow_id, step), "status": {"$in": [str(s) for s in WAITING]}}
        changes = {
            "status": str(Status.CANCELLED),
            "finished_at": t,
            "updated_at": t,
            "lease_until": None,
            "expires_at": t + self.result_ttl if self.result_ttl else None,
        }
        return self.jobs.update_many(query, {"$set": changes}).modified_count
