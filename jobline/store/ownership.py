"""Jobs, workflows, schedules and files made with auth off belong to nobody; an operator
hands them to an owner.

With ``JOBLINE_AUTH=off`` (``jobline up``'s default) a job records no owner.
Once keys are required, only admin keys see such a job, until ``jobline jobs
adopt --owner NAME`` gives it, and every workflow, schedule and file made the
same way (whose later steps and fires then belong to NAME too, and whose
uploads NAME's jobs may then read, retried ones included), to one key's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from jobline.store.mongo import unavailable_as_error

# Matches a null owner and a missing one alike.
UNOWNED: dict[str, Any] = {"owner": None}
UNOWNED_FILE: dict[str, Any] = {"metadata.owner": None}
BATCH = 1000
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class Unowned:
    """How many jobs, workflows, schedules and files belong (or belonged) to nobody."""

    jobs: int
    workflows: int
    schedules: int
    files: int


class Ownership:
    """The one place owners are changed after the fact."""

    def __init__(self, db: Database[Any]) -> None:
        self.jobs: Collection[Any] = db["jobs"]
        self.workflows: Collection[Any] = db["workflows"]
        self.schedules: Collection[Any] = db["schedules"]
        self.files: Collection[Any] = db["fs.files"]  # GridFS's records (jobline.store.files)

    @unavailable_as_error
    def count_unowned(self) -> Unowned:
        return Unowned(
            self.jobs.count_documents(UNOWNED),
            self.workflows.count_documents(UNOWNED),
            self.schedules.count_documents(UNOWNED),
            self.files.count_documents(UNOWNED_FILE),
        )

    @unavailable_as_error
    def adopt(self, owner: str) -> Unowned:
        """Give every unowned job, workflow, schedule and file to ``owner``; how many were
        handed over.

        Workflows first: a step released meanwhile makes its jobs with the workflow's
        owner, and any made before are among the jobs handed over next.
        """
        workflows = self.workflows.update_many(UNOWNED, {"$set": {"owner": owner}}).modified_count
        jobs = self.jobs.update_many(
            {**UNOWNED, "idempotency_key": {"$exists": False}}, {"$set": {"owner": owner}}
        ).modified_count
        keyed = self.jobs.find(
            {**UNOWNED, "idempotency_key": {"$exists": True}}, {"idempotency_key": 1}
        )
        batch: list[dict[str, Any]] = []
        for job in keyed:
            batch.append(job)
            if len(batch) == BATCH:
                jobs += self._adopt_keyed(owner, batch)
                batch = []
        if batch:
            jobs += self._adopt_keyed(owner, batch)
        schedules = self.schedules.update_many(UNOWNED, {"$set": {"owner": owner}}).modified_count
        files = self.files.update_many(
            UNOWNED_FILE, {"$set": {"metadata.owner": owner}}
        ).modified_count
        return Unowned(jobs, workflows, schedules, files)

    def _adopt_keyed(self, owner: str, batch: list[dict[str, Any]]) -> int:
        """Jobs made with an Idempotency-Key: keys are stored per owner (``owner:key``).

        The key moves with its job, so the new owner repeating the request finds it.
        Where the owner already used that key for a job of their own, that job
        keeps it and the adopted one gives its key up. (The filter on a missing
        owner makes a job the cursor returns twice change once.)
        """
        requests = [
            UpdateOne(
                {"_id": job["_id"], **UNOWNED},
                {"$set": {"owner": owner, "idempotency_key": f"{owner}:{job['idempotency_key']}"}},
            )
            for job in batch
        ]
        try:
            return self.jobs.bulk_write(requests, ordered=False).modified_count
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != DUPLICATE_KEY for error in errors):
                raise
            taken = [batch[error["index"]]["_id"] for error in errors]
            given_up = self.jobs.update_many(
                {"_id": {"$in": taken}, **UNOWNED},
                {
                    "$set": {"owner": owner},
                    "$unset": {"idempotency_key": "", "request_fingerprint": ""},
                },
            )
            return int(exc.details["nModified"]) + given_up.modified_count
