"""The MongoDB record of recurring schedules: every query on the ``schedules`` collection.

MongoDB is the truth of which schedules exist (listing, paging, what a fire
submits); RedBeat keeps the timing of each in Redis (see jobline.engine.schedules).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from jobline.core import ids
from jobline.core.errors import JoblineError
from jobline.store.mongo import journaled, mine, unavailable_as_error
from jobline.store.paging import Page, newest_first
from jobline.store.records import now

Schedule = dict[str, Any]


class ScheduleNotFound(JoblineError):
    """No schedule with that id."""

    status = 404
    title = "Schedule not found"


class ScheduleStore:
    """Schedules in one MongoDB collection, newest first by their UUIDv7 id."""

    def __init__(self, db: Database[Any]) -> None:
        self.schedules: Collection[Schedule] = db["schedules"]

    @unavailable_as_error
    def insert(self, schedule: Schedule) -> Schedule:
        journaled(self.schedules).insert_one(schedule)  # its 201 promises it survives a crash
        return schedule

    @unavailable_as_error
    def find(self, schedule_id: str, owner: str | None = None) -> Schedule | None:
        """The schedule (``owner``'s, unless None), or None if there is none (any more)."""
        if not ids.is_id(schedule_id):
            return None
        return self.schedules.find_one(mine({"_id": schedule_id}, owner))

    def get(self, schedule_id: str, owner: str | None = None) -> Schedule:
        """The schedule; ScheduleNotFound if there is none (or it is another owner's)."""
        schedule = self.find(schedule_id, owner)
        if schedule is None:
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")
        return schedule

    @unavailable_as_error
    def list(self, *, limit: int = 50, cursor: str | None = None, owner: str | None = None) -> Page:
        """Schedules newest first, one page at a time; ValueError for a bad cursor."""
        return newest_first(self.schedules, mine({}, owner), limit, cursor)

    @unavailable_as_error
    def all_ids(self) -> Iterator[str]:
        """Every schedule's id."""
        return (doc["_id"] for doc in self.schedules.find({}, {"_id": 1}))

    @unavailable_as_error
    def delete(self, schedule_id: str, owner: str | None = None) -> Schedule:
        """Remove a schedule and return it; ScheduleNotFound if there is none."""
        schedule = self.get(schedule_id, owner)
        if self.schedules.delete_one(mine({"_id": schedule_id}, owner)).deleted_count != 1:
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")
        return schedule

    @unavailable_as_error
    def fired(self, schedule_id: str, job_id: str | None, error: str | None = None) -> None:
        """Note that the schedule fired, and the job it submitted (or why it could not)."""
        changes: dict[str, Any] = {"last_fired_at": now(), "last_error": error}
        if job_id is not None:
            changes["last_job_id"] = job_id
        self.schedules.update_one({"_id": schedule_id}, {"$set": changes, "$inc": {"fires": 1}})


def new_schedule(spec: dict[str, Any], created_at: datetime | None = None) -> Schedule:
    """A schedule record as it is first stored."""
    return {
        "_id": ids.new_id(),
        **spec,
        "created_at": created_at or now(),
        "last_fired_at": None,
        "last_job_id": None,
        "last_error": None,
        "fires": 0,
    }
