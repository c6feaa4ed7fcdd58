"""Pages of job lists: opaque cursors, and the time windows a page is gathered from.

A page is newest first and continues below the last id it showed (keyset
pagination; ids are UUIDv7, so id order is creation order, and a job's
created_at is its id's millisecond). The store reads a page from a series of
time windows, newest first, until the page is full: the first 1 ms, each
eight times wider than the one before while they find nothing, then as wide
as what they found says holds the rest of the page, but at most eight times
wider than the last (64 times, for a list read a status at a time). Each window is
read by index range scans on every server (one, or one a status: see
jobline.store.lists); this matters on the embedded SecantusDB, which fetches
and sorts every document a query matches before it applies the limit (and
scans the whole collection for a range on _id alone), so one unbounded query
would cost as much as the collection.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.collection import Collection

from jobline.core import ids

# 1 ms, 8 ms, 64 ms … the 14th window ends some 20 years back; then one without
# bound. Small first: a batch puts thousands of jobs in one second, and a window
# costs what it holds; an empty one costs one cheap index probe.
FIRST_WINDOW_MS = 1
GROWTH = 8
WINDOWS = 14
# How far back the bounded windows reach (the 14 above, grown eightfold each).
REACH_MS = FIRST_WINDOW_MS * (GROWTH**WINDOWS - 1) // (GROWTH - 1)
# Once a window finds jobs, the next reaches as far as the density found so far
# says holds the rest of the page, a quarter more, but never less far than the
# last nor more than GROWTH (or the growth asked for) times it. SecantusDB reads
# every job a window holds: at 28 jobs a second, growth alone read 131 jobs for
# a page of 50.
MARGIN = 1.25
# A bound on the windows of one page, whatever they find; an open one follows.
MAX_WINDOWS = 64
NEWEST_FIRST = [("_id", DESCENDING)]


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a page continues after; ValueError if the cursor is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        before = json.loads(raw)["before"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(before, str) or not ids.is_id(before):
        raise ValueError("invalid cursor")
    return before


def newest_first(
    collection: Collection[Any], query: dict[str, Any], limit: int, cursor: str | None
) -> Page:
    """One page of ``query``'s documents by ``_id`` descending, below ``cursor``; ValueError
    for a bad cursor. For a collection that stays small (schedules); the others read
    time windows (``windowed``, below)."""
    if cursor is not None:
        query = {**query, "_id": {"$lt": decode_cursor(cursor)}}
    found = list(collection.find(query).sort(NEWEST_FIRST).limit(limit + 1))
    more = len(found) > limit
    found = found[:limit]
    return Page(found, encode_cursor(found[-1]["_id"]) if more else None)


def newest_of(
    collection: Collection[Any], queries: list[dict[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` documents the queries find, each read on its own and merged."""
    parts = [list(collection.find(query).sort(NEWEST_FIRST).limit(limit)) for query in queries]
    if len(parts) == 1:
        return parts[0]
    merged = heapq.merge(*parts, key=lambda doc: doc["_id"], reverse=True)
    return list(itertools.islice(merged, limit))


def windowed(
    collection: Collection[Any],
    partitions: list[dict[str, Any]],
    limit: int,
    cursor: str | None,
    now_ms: int,
) -> Page:
    """A page, newest first, of the documents any of ``partitions`` (equality filters, each
    the leading fields of an index followed by ``_id``) matches, read window by window as
    the jobs' lists are: each window one index range scan a partition on every server,
    never the whole collection. ValueError for a bad cursor."""
    growth = GROWTH if len(partitions) == 1 else GROWTH**2
    walk = Windows(Span.of(cursor), now_ms, limit + 1, growth)
    items: list[dict[str, Any]] = []
    for window in walk:
        if len(items) > limit:
            break
        id_range = window.id_range()
        queries = [{**p, "_id": id_range} if id_range else p for p in partitions]
        found = newest_of(collection, queries, limit + 1 - len(items))
        items += found
        walk.found(len(found))
    if len(items) > limit:
        return Page(items[:limit], encode_cursor(items[limit - 1]["_id"]))
    return Page(items, None)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def at_ms(ms: int) -> datetime:
    """The UTC time of a Unix millisecond, exactly (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True)
class Span:
    """Which ids a list may show: below an id (exclusive), from a millisecond on."""

    below: str | None = None
    from_ms: int | None = None

    @classmethod
    def of(
        cls,
        cursor: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Span:
        bounds = []
        if cursor is not None:
            bounds.append(decode_cursor(cursor))
        if created_before is not None:
            bounds.append(ids.boundary_id(_ms(created_before), upper=False))
        from_ms = _ms(created_after) + 1 if created_after is not None else None
        return cls(min(bounds) if bounds else None, from_ms)


@dataclass(frozen=True)
class Window:
    """Ids below ``below`` (None: any) made at or after ``from_ms`` (None: any time)."""

    below: str | None
    from_ms: int | None

    def id_range(self) -> dict[str, str]:
        bounds: dict[str, str] = {}
        if self.below is not None:
            bounds["$lt"] = self.below
        if self.from_ms is not None:
            bounds["$gte"] = ids.boundary_id(self.from_ms, upper=False)
        return bounds


class Windows:
    """The windows that cover a span, newest first, each sized by what the last ones found.

    Iterate, and after each window say with ``found`` how many of the
    ``wanted`` jobs it held. While they find nothing each is GROWTH times the
    last; once sized by what they found, at most ``growth`` times. ``reach_ms``,
    how far back the same list's last full page reached, lets the window after
    an empty first one go that far at once instead of growing towards it.
    """

    def __init__(
        self,
        span: Span,
        now_ms: int,
        wanted: int | None = None,
        growth: int = GROWTH,
        reach_ms: int | None = None,
    ) -> None:
        self.span = span
        self.growth = growth
        self.top = ids.timestamp_ms(span.below) if span.below is not None else now_ms
        self.wanted = wanted
        self.reach_ms = reach_ms
        self._found = 0

    def found(self, n: int) -> None:
        """The window just read held ``n`` of the jobs wanted."""
        self._found = n

    def __iter__(self) -> Iterator[Window]:
        span, top, width = self.span, self.top, FIRST_WINDOW_MS
        below, seen, wanted = span.below, 0, self.wanted
        for _ in range(MAX_WINDOWS):
            start = top - width
            if self.top - top >= REACH_MS or start <= 0:
                break  # far enough back (or at 1970): the rest in one window
            if span.from_ms is not None and start <= span.from_ms:
                break
            self._found = 0
            yield Window(below, start)
            found, seen = self._found, seen + self._found
            wanted = None if wanted is None else wanted - found
            below, top = ids.boundary_id(start, upper=False), start
            if found and wanted is not None and wanted > 0:
                width = _next_width(width, seen, self.top - top, wanted, self.growth)
            elif not seen and self.reach_ms and width == FIRST_WINDOW_MS:
                width = max(width * GROWTH, self.reach_ms - width)
            else:
                width *= GROWTH
        yield Window(below, span.from_ms)

    def reach_to(self, job_id: str) -> int:
        """How far back a window must reach to hold ``job_id``, a margin more: the
        ``reach_ms`` for the next page of the same list."""
        return math.ceil((self.top - ids.timestamp_ms(job_id) + 1) * MARGIN)


def _next_width(width: int, seen: int, covered_ms: int, wanted: int, growth: int) -> int:
    holds_the_rest = math.ceil(covered_ms * wanted * MARGIN / seen)
    return max(width, min(width * growth, holds_the_rest))


def windows(span: Span, now_ms: int) -> Iterator[Window]:
    """The windows that cover ``span``, newest first, each GROWTH times the last."""
    return iter(Windows(span, now_ms))
