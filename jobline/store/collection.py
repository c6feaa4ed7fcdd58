"""The jobs collection: the connection, retention, and finding one job by its id."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, OperationFailure

from jobline.core import ids
from jobline.core.errors import JobNotFound, StoreUnavailable
from jobline.core.settings import Settings
from jobline.store.group_commit import GroupCommit
from jobline.store.mongo import connect, journaled, mine, unavailable_as_error
from jobline.store.records import Job

HOSTNAME = socket.gethostname()


class JobCollection:
    """The ``jobs`` collection of one database, and what every part of the store shares."""

    def __init__(self, settings: Settings, client: MongoClient[Job] | None = None) -> None:
        self.client: MongoClient[Job] = client or connect(settings)
        self.db = self.client[settings.mongo_db]
        self.jobs: Collection[Job] = self.db["jobs"]
        # Accepted jobs are journaled before the answer; those submitted at once by this
        # process's threads share one insert_many.
        self.accepted: Collection[Job] = journaled(self.jobs)
        self.inserts = GroupCommit(self.accepted)
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.result_ttl = timedelta(seconds=settings.result_ttl) if settings.result_ttl else None
        # Lists by owner are asked for only while the API wants keys.
        self.owner_lists = settings.auth

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

    @unavailable_as_error
    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id (owned by ``owner``, unless None); JobNotFound if there is none.

        Another owner's job is not found, exactly like a missing one, so ids leak nothing.
        """
        job = self.jobs.find_one(mine({"_id": job_id}, owner)) if ids.is_id(job_id) else None
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job
