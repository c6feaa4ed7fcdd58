"""Listing jobs newest first, a page at a time, on the indexes the lists need."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection

from jobline.store.collection import JobCollection
from jobline.store.mongo import mine, unavailable_as_error
from jobline.store.paging import (
    GROWTH,
    Page,
    Span,
    Window,
    Windows,
    encode_cursor,
    newest_of,
)
from jobline.store.records import Job, Status, now

# Every list query is equality on an index's leading fields, the status among
# them, and a range on _id (a UUIDv7: {_id: -1} is newest first). A list that
# names no status reads each status on its own and merges them: SecantusDB
# plans neither $in nor $or on an index, uses an index only when its leading
# fields are the filter's equalities, and scans the collection for a range on
# _id alone, so an index of its own for such lists (on type, on created_at, on
# owner) would be one more that every write of every job maintains, to serve
# reads that seven index probes serve as well (measured).
#
# SecantusDB rewrites every entry of every index a document is in on each
# update (a real mongod only those whose fields changed), and weighs every
# index of the collection for each write's filter, so each index costs every
# transition of every job, even one the job is not in. Owner lists exist only
# with auth on: their indexes are made only then (with auth off no query asks
# for an owner, and the store does a quarter less work a job without them,
# measured), and are partial on an owner being set. Equality on an owner
# implies the filter, so both servers use them for a key's own lists; a key's
# list by status (or type and status) is served by them too.
#
# attempts trails the status index so that every conditional transition's filter
# ({_id, status, attempts}) is that index's leading fields: SecantusDB then picks
# it at once instead of weighing every index for each clause (a claim or an
# outcome costs it a quarter less, measured). A real mongod uses _id either way.
OWNED = {"owner": {"$gt": ""}}
LIST_INDEXES: tuple[tuple[list[tuple[str, int]], dict[str, Any]], ...] = (
    ([("status", ASCENDING), ("_id", DESCENDING), ("attempts", ASCENDING)], {}),
    ([("type", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)], {}),
)
# With auth on, a key that is not an admin's lists only its owner's jobs.
OWNER_INDEXES: tuple[tuple[list[tuple[str, int]], dict[str, Any]], ...] = (
    (
        [("owner", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)],
        {"partialFilterExpression": OWNED},
    ),
    (
        [("owner", ASCENDING), ("type", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)],
        {"partialFilterExpression": OWNED},
    ),
)
# Indexes of older deployments that one above replaces, or that lists no longer use.
RETIRED_INDEXES = (
    "status_1__id_-1",
    "type_1__id_-1",
    "created_at_-1__id_-1",
    "owner_1__id_-1",
    "owner_1_type_1__id_-1",
)
STATUSES = tuple(str(status) for status in Status)
# A window read status by status costs a probe a status, most finding nothing,
# so once such windows have found jobs, the next may reach as far as their
# density says, up to 64 times the last instead of 8: fewer probes for the rest
# of the page. While they find nothing they grow eightfold like any other, so
# that one past a quiet spell does not reach 64 times too far into what follows.
GROWTH_BY_STATUS = GROWTH**2
# How far back each list's last full page reached, by its filter, in this process:
# the next page of the same list, at a like density, reaches there in its second
# window instead of growing eightfold towards it (a probe a status for each
# window saved). The first window stays 1 ms, so a burst newer than what was
# learned is still read a millisecond at a time; a minute old, it is forgotten.
REACH_KEPT_SECONDS = 60
_reach: TTLCache[tuple[Any, ...], int] = TTLCache(maxsize=1024, ttl=REACH_KEPT_SECONDS)
_reach_lock = threading.Lock()


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
        growth = GROWTH_BY_STATUS if _by_status(equal) else GROWTH
        learned = (self.jobs.full_name, limit, *sorted(equal.items()))
        with _reach_lock:
            reach = _reach.get(learned)
        walk = Windows(span, int(now().timestamp() * 1000), limit + 1, growth, reach)
        for window in walk:
            if len(items) > limit:
                break
            found = _read_window(self.jobs, equal, window, limit + 1 - len(items))
            items += found
            walk.found(len(found))
        if len(items) > limit:
            with _reach_lock:
                _reach[learned] = walk.reach_to(items[limit]["_id"])
            return Page(items[:limit], encode_cursor(items[limit - 1]["_id"]))
        return Page(items, None)


def _read_window(
    jobs: Collection[Job], equal: dict[str, Any], window: Window, limit: int
) -> list[Job]:
    """The newest ``limit`` jobs of one window, merged from each query that reads it."""
    return newest_of(jobs, window_queries(equal, window), limit)


def window_queries(equal: dict[str, Any], window: Window) -> list[dict[str, Any]]:
    """The filters that read one window of a list, each on an index (see LIST_INDEXES)."""
    id_range = window.id_range()
    bounded = {**equal, "_id": id_range} if id_range else dict(equal)
    if _by_status(equal):
        return [{**bounded, "status": status} for status in STATUSES]
    return [bounded]


def _by_status(equal: dict[str, Any]) -> bool:
    """Whether a list is read a status at a time: one that names no status."""
    return "status" not in equal
