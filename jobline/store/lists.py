"""Listing jobs newest first, a page at a time, on the indexes the lists need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from jobline.store.collection import JobCollection
from jobline.store.mongo import mine, unavailable_as_error
from jobline.store.paging import Page, Span, Window, Windows, at_ms, encode_cursor
from jobline.store.records import Job, Status, now

# A list query with type or status is equality on an index's prefix and a range
# on _id (a UUIDv7: {_id: -1} is newest first). One without is a created_at
# range: SecantusDB scans the collection for a range on _id alone.
#
# SecantusDB rewrites every entry of every index a document is in on each
# update (a real mongod only those whose fields changed), and weighs every
# index of the collection for each write's filter, so each index costs every
# transition of every job, even one the job is not in. Owner lists exist only
# with auth on: their indexes are made only then (with auth off no query asks
# for an owner, and the store does a quarter less work a job without them,
# measured), and are partial on an owner being set. Equality on an owner
# implies the filter, so both servers use them for a key's own lists.
#
# attempts trails the status index so that every conditional transition's filter
# ({_id, status, attempts}) is that index's leading fields: SecantusDB then picks
# it at once instead of weighing every index for each clause (a claim or an
# outcome costs it a quarter less, measured). A real mongod uses _id either way.
OWNED = {"owner": {"$gt": ""}}
LIST_INDEXES: tuple[tuple[list[tuple[str, int]], dict[str, Any]], ...] = (
    ([("type", ASCENDING), ("_id", DESCENDING)], {}),
    ([("status", ASCENDING), ("_id", DESCENDING), ("attempts", ASCENDING)], {}),
    ([("type", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)], {}),
    ([("created_at", DESCENDING), ("_id", DESCENDING)], {}),
)
# With auth on, a key that is not an admin's lists only its owner's jobs.
OWNER_INDEXES: tuple[tuple[list[tuple[str, int]], dict[str, Any]], ...] = (
    ([("owner", ASCENDING), ("_id", DESCENDING)], {"partialFilterExpression": OWNED}),
    (
        [("owner", ASCENDING), ("type", ASCENDING), ("_id", DESCENDING)],
        {"partialFilterExpression": OWNED},
    ),
)
# Indexes of older deployments that one above replaces.
RETIRED_INDEXES = ("status_1__id_-1",)
NEWEST_FIRST = [("_id", DESCENDING)]


class Lists(JobCollection):
    """Pages of jobs, filtered by owner, type, status and creation time."""

    @unavailable_as_error
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
        """Jobs newest first, one page at a time; see jobline.store.paging for how."""
        equal: dict[str, Any] = mine({}, owner)
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
        walk = Windows(span, int(now().timestamp() * 1000), wanted=limit + 1 - len(items))
        for window in walk:
            if len(items) > limit:
                break
            query, order = _window_query(equal, window)
            found = list(self.jobs.find(query).sort(order).limit(limit + 1 - len(items)))
            items += found
            walk.found(len(found))
        if len(items) > limit:
            return Page(items[:limit], encode_cursor(items[limit - 1]["_id"]))
        return Page(items, None)


def _window_query(equal: dict[str, Any], window: Window) -> tuple[dict[str, Any], list[Any]]:
    """The filter and order that read one window of a list (see LIST_INDEXES)."""
    if equal:
        id_range = window.id_range()
        return {**equal, "_id": id_range} if id_range else dict(equal), NEWEST_FIRST
    created = window.created_range()
    order = [("created_at", DESCENDING), *NEWEST_FIRST]
    return ({"created_at": created} if created else {}), order
