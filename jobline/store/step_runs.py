"""A step's run: the jobs it was released with and the result it ended with, and those jobs.

These live beside the workflow's record, not in it: a fan-out of 1,000 items
has 1,000 job ids and results, and every member's update of the workflow
would otherwise rewrite them all (the embedded server's cost of an update
grows with the document). A run's record is inserted once, under
``<workflow>/<step index>/<run>``: the unique ``_id`` makes the job ids it
names the only ones that step run will ever have.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from jobline.store.mongo import journaled, unavailable_as_error
from jobline.store.records import WAITING, Job, Status, now

StepRun = dict[str, Any]


def run_id(workflow_id: str, i: int, run: int) -> str:
    return f"{workflow_id}/{i}/{run}"


class StepRuns:
    """The ``workflow_steps`` collection, and queries on ``jobs`` a step run at a time."""

    def __init__(self, db: Database[Any], result_ttl: timedelta | None = None) -> None:
        self.jobs: Collection[Job] = db["jobs"]
        self.accepted_jobs = journaled(self.jobs)  # a released step's jobs, as any job
        self.runs: Collection[StepRun] = db["workflow_steps"]
        self.result_ttl = result_ttl

    @unavailable_as_error
    def record_run(self, workflow_id: str, i: int, run: int, job_ids: Sequence[str]) -> StepRun:
        """The run's record with these job ids, or the one an earlier release already made."""
        record = {
            "_id": run_id(workflow_id, i, run),
            "workflow_id": workflow_id,
            "job_ids": list(job_ids),
            "result": None,
        }
        try:
            self.runs.insert_one(record)
        except DuplicateKeyError:
            found = self.runs.find_one({"_id": record["_id"]})
            if found is not None:
                return found
            raise
        return record

    @unavailable_as_error
    def insert_runs(self, records: Sequence[StepRun]) -> None:
        if records:
            self.runs.insert_many(records)

    @unavailable_as_error
    def params_of(self, workflow_id: str) -> list[dict[str, Any]]:
        """Each step's params, in step order (kept apart: a FASTA text may be megabytes)."""
        found = self.runs.find_one({"_id": f"{workflow_id}/params"})
        return found["params"] if found else []

    @unavailable_as_error
    def find_run(self, workflow_id: str, i: int, run: int) -> StepRun | None:
        return self.runs.find_one({"_id": run_id(workflow_id, i, run)})

    @unavailable_as_error
    def set_result(self, workflow_id: str, i: int, run: int, result: Any) -> None:
        """Keep a step run's result; written before the step is marked succeeded."""
        self.runs.update_one({"_id": run_id(workflow_id, i, run)}, {"$set": {"result": result}})

    @unavailable_as_error
    def runs_of(self, workflow_id: str) -> dict[str, StepRun]:
        """Every run record of a workflow, by ``_id``, in one range query."""
        span = {"$gte": f"{workflow_id}/", "$lt": f"{workflow_id}0"}  # "0" follows "/"
        return {record["_id"]: record for record in self.runs.find({"_id": span})}

    @unavailable_as_error
    def expire_runs(self, workflow_id: str, at: datetime | None) -> None:
        """Give a workflow's step records the expiry of the workflow (None: keep them)."""
        span = {"$gte": f"{workflow_id}/", "$lt": f"{workflow_id}0"}
        self.runs.update_many({"_id": span}, {"$set": {"expires_at": at}})

    @unavailable_as_error
    def delete_runs(self, workflow_id: str) -> None:
        self.runs.delete_many({"_id": {"$gte": f"{workflow_id}/", "$lt": f"{workflow_id}0"}})

    def _of_run(self, workflow_id: str, step: str, job_ids: Sequence[str]) -> dict[str, Any]:
        # A range on _id uses its index (a run's ids were made together);
        # {$in: [1,000 ids]} makes the embedded server scan the collection.
        span = {"$gte": min(job_ids), "$lte": max(job_ids)}
        return {"_id": span, "workflow_id": workflow_id, "step": step}

    @unavailable_as_error
    def run_jobs(
        self,
        workflow_id: str,
        step: str,
        job_ids: Sequence[str],
        fields: Sequence[str] | None = None,
    ) -> list[Job]:
        """The jobs of a step run (by the ids its record names), in item order."""
        if not job_ids:
            return []
        wanted = set(job_ids)
        projection = {f: 1 for f in (*fields, "item")} if fields is not None else None
        found = self.jobs.find(self._of_run(workflow_id, step, job_ids), projection)
        return sorted((j for j in found if j["_id"] in wanted), key=lambda j: j.get("item") or 0)

    @unavailable_as_error
    def insert_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        """Insert a step run's jobs; those already there (a repeated release) are left alone.

        Returns the jobs this call inserted.
        """
        if not jobs:
            return []
        try:
            self.accepted_jobs.insert_many(jobs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            taken = {e["index"] for e in errors if e["code"] == 11000}
            if len(taken) != len(errors):
                raise
            return [job for n, job in enumerate(jobs) if n not in taken]
        return list(jobs)

    @unavailable_as_error
    def cancel_waiting_jobs(self, workflow_id: str, step: str, job_ids: Sequence[str]) -> int:
        """Cancel a step run's jobs that have not started, in one update; how many."""
        if not job_ids:
            return 0
        t = now()
        waiting = {"$in": [str(s) for s in WAITING]}
        query = {**self._of_run(workflow_id, step, job_ids), "status": waiting}
        changes = {
            "status": str(Status.CANCELLED),
            "finished_at": t,
            "updated_at": t,
            "lease_until": None,
            "expires_at": t + self.result_ttl if self.result_ttl else None,
        }
        return self.jobs.update_many(query, {"$set": changes}).modified_count
