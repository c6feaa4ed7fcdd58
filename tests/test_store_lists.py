"""How the store reads a page: time windows, each served by an index."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from jobline.core import ids
from jobline.core.settings import Settings
from jobline.store.jobs import JobStore
from jobline.store.lists import OWNED, STATUSES, window_queries
from jobline.store.paging import (
    FIRST_WINDOW_MS,
    GROWTH,
    REACH_MS,
    WINDOWS,
    Span,
    Window,
    Windows,
    at_ms,
    encode_cursor,
    windows,
)
from jobline.store.records import Status, new_job
from tests.conftest import make_settings
from tests.support import assert_index_range_scan

NOW_MS = 1_800_000_000_000


def test_windows_cover_the_span_newest_first_without_gaps() -> None:
    cursor = ids.new_id(NOW_MS)
    after = datetime.fromtimestamp((NOW_MS - 3_600_000) / 1000, UTC)
    span = Span.of(encode_cursor(cursor), created_after=after)
    ws = list(windows(span, NOW_MS + 10))
    assert ws[0].below == cursor
    for newer, older in zip(ws, ws[1:], strict=False):
        assert newer.from_ms is not None
        assert older.below == ids.boundary_id(newer.from_ms, upper=False)
    assert ws[-1].from_ms == span.from_ms
    widths = [ids.timestamp_ms(w.below) - w.from_ms for w in ws[1:-1] if w.below and w.from_ms]
    assert widths == sorted(widths)


def test_without_a_lower_bound_the_last_window_is_open() -> None:
    ws = list(windows(Span(), NOW_MS))
    assert ws[0] == Window(None, NOW_MS - FIRST_WINDOW_MS)
    assert ws[-1].from_ms is None
    assert len(ws) == WINDOWS + 1
    # The last bounded window reaches back more than ten years.
    assert ws[-2].from_ms is not None and NOW_MS - ws[-2].from_ms > 10 * 365 * 86_400_000


def held(window: Window, top_ms: int, every_ms: int) -> int:
    """How many of jobs made every ``every_ms`` back from ``top_ms`` a window holds."""
    upper = ids.timestamp_ms(window.below) if window.below else top_ms + 1
    lower = window.from_ms if window.from_ms is not None else 0
    # Jobs at top_ms - k * every_ms, k >= 0, inside [lower, upper).
    first = max(0, -(-(top_ms - upper + 1) // every_ms))
    last = (top_ms - lower) // every_ms
    return max(0, last - first + 1)


def read_page(walk: Windows, top_ms: int, every_ms: int, page: int) -> tuple[int, list[Window]]:
    """Walk the windows as the store does; the jobs they held in all, and the windows."""
    read, wanted, seen = 0, page, []
    for window in walk:
        if wanted <= 0:
            break
        seen.append(window)
        found = held(window, top_ms, every_ms)
        read += found
        walk.found(min(found, wanted))
        wanted -= min(found, wanted)
    return read, seen


def test_once_a_window_finds_jobs_the_next_is_sized_by_what_it_found() -> None:
    # Some 28 jobs a second, as a busy service makes them: growth alone reads 131
    # jobs' documents for a page of 51; sized by density, about the page.
    page = 51
    read, _ = read_page(Windows(Span(), NOW_MS, wanted=page), NOW_MS, 36, page)
    grown, _ = read_page(Windows(Span(), NOW_MS), NOW_MS, 36, page)
    assert page <= read <= 1.5 * page
    assert grown > 2 * page


def widths(found: list[int], growth: int = GROWTH, reach_ms: int | None = None) -> list[int]:
    """The widths of a page's first windows, each having found what ``found`` says."""
    walk = Windows(Span(), NOW_MS, wanted=51, growth=growth, reach_ms=reach_ms)
    starts = []
    for window, n in zip(walk, found, strict=False):
        assert window.from_ms is not None
        starts.append(window.from_ms)
        walk.found(n)
    return [NOW_MS - starts[0]] + [a - b for a, b in itertools.pairwise(starts)]


def test_windows_grow_eightfold_while_empty_and_up_to_the_growth_asked_for_once_sized() -> None:
    # A list read a status at a time pays seven probes a window: it asks for 64.
    assert widths([0, 0, 0], GROWTH**2) == [1, 8, 64]
    # One job in the first 1 ms: the rest of the page (50) is some 63 ms away.
    assert widths([1, 0], GROWTH**2) == [1, 63]
    assert widths([1, 0], GROWTH) == [1, 8]


def test_after_an_empty_first_window_the_next_reaches_as_far_as_the_last_page_did() -> None:
    assert widths([0, 0, 0], reach_ms=2_000) == [1, 1_999, 1_999 * GROWTH]
    assert widths([0, 0], reach_ms=4) == [1, 8]  # never less than growth alone
    # The first millisecond found jobs (a burst): sized by them, not by the last page.
    assert widths([1, 0], reach_ms=2_000) == [1, 8]
    # What the last page reached: its last job's age, a margin more.
    walk = Windows(Span(), NOW_MS)
    assert walk.reach_to(ids.new_id(NOW_MS - 1_999)) == 2_500


def assert_tiled(walk: Windows, every_ms: int) -> list[Window]:
    """The windows cover the span newest first, each starting where the last ended."""
    ws = []
    for window in walk:
        ws.append(window)
        walk.found(held(window, NOW_MS, every_ms) if window.from_ms else 0)
    for newer, older in zip(ws, ws[1:], strict=False):
        assert newer.from_ms is not None and newer.from_ms > 0
        assert older.below == ids.boundary_id(newer.from_ms, upper=False)
    assert ws[-1].from_ms is None
    return ws


def test_windows_sized_by_what_they_find_still_cover_the_span_without_gaps() -> None:
    for every_ms in (1, 7, 36, 1000, 86_400_000):
        # Started from where a last page reached, they still tile the span.
        for reach_ms in (2, 5_000, REACH_MS):
            assert_tiled(Windows(Span(), NOW_MS, wanted=500, reach_ms=reach_ms), every_ms)
        ws = assert_tiled(Windows(Span(), NOW_MS, wanted=10_000), every_ms)
        widths = [
            newer.from_ms - older.from_ms
            for newer, older in zip(ws, ws[1:], strict=False)
            if newer.from_ms is not None and older.from_ms is not None
        ]
        # Each window at least as wide as the last, at most GROWTH times it; the
        # bounded ones reach as far back as growth alone does, or the next would
        # have crossed the epoch, before the open one.
        assert all(a <= b <= a * GROWTH for a, b in zip(widths, widths[1:], strict=False))
        oldest = ws[-2].from_ms
        assert oldest is not None
        assert NOW_MS - oldest >= REACH_MS or oldest <= widths[-1] * GROWTH


def test_a_span_ending_near_the_epoch_never_reaches_below_it() -> None:
    before = datetime.fromtimestamp(86_400, UTC)
    ws = list(windows(Span.of(created_before=before), NOW_MS))
    assert all(w.from_ms is None or w.from_ms > 0 for w in ws)
    assert ws[-1].from_ms is None


def test_created_at_is_the_id_s_own_millisecond() -> None:
    job = new_job("noop", {})
    assert job["created_at"] == at_ms(ids.timestamp_ms(job["_id"]))


FILTERS: list[dict[str, Any]] = [
    {},
    {"type": "noop"},
    {"status": str(Status.QUEUED)},
    {"type": "noop", "status": str(Status.QUEUED)},
    {"owner": "alice"},
    {"owner": "alice", "type": "noop"},
    {"owner": "alice", "status": str(Status.QUEUED)},
    {"owner": "alice", "type": "noop", "status": str(Status.QUEUED)},
]


def store_on(settings: Settings, db: str, *, auth: bool) -> JobStore:
    store = JobStore(Settings(**{**settings.model_dump(), "mongo_db": db, "auth": auth}))
    store.jobs.drop()
    store.ensure_indexes()
    return store


@pytest.fixture(scope="module")
def owned(settings: Settings) -> Iterator[JobStore]:
    """A store of a deployment with auth on: jobs have owners, and keys list their own."""
    store = store_on(settings, "jobline_owned_lists", auth=True)
    yield store
    store.jobs.drop()
    store.close()


@pytest.mark.parametrize("equal", FILTERS, ids=lambda f: "+".join(f) or "unfiltered")
@pytest.mark.parametrize("bounded", [False, True], ids=["open", "cursor-and-created-after"])
def test_every_window_of_every_filter_is_an_index_scan(
    owned: JobStore, equal: dict[str, Any], bounded: bool
) -> None:
    store = owned
    store.jobs.delete_many({})
    owners = ("alice", None, "bob")
    store.insert_many(
        [new_job(t, {}, owner=o) for t in ("noop", "sleep", "bmi") for o in owners * 7]
    )
    span = Span()
    if bounded:
        newest = store.jobs.find_one(sort=[("_id", -1)])
        assert newest is not None
        after = newest["created_at"] - timedelta(days=30)
        span = Span.of(encode_cursor(newest["_id"]), created_after=after)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    queries = [q for w in windows(span, now_ms) for q in window_queries(equal, w)]
    for query in queries:
        assert "_id" in query or not bounded
        assert_index_range_scan(store.jobs, query)


def test_owner_indexes_exist_only_while_auth_is_on(settings: Settings) -> None:
    def owner_indexes(store: JobStore) -> list[Any]:
        found = [info["key"] for info in store.jobs.index_information().values()]
        return [key for key in found if key[0][0] == "owner"]

    off = store_on(settings, "jobline_lists_auth_off", auth=False)
    on = store_on(settings, "jobline_lists_auth_on", auth=True)
    try:
        # With auth off no list asks for an owner; each index costs every write.
        assert owner_indexes(off) == []
        assert sorted(owner_indexes(on)) == [
            [("owner", 1), ("status", 1), ("_id", -1)],
            [("owner", 1), ("type", 1), ("status", 1), ("_id", -1)],
        ]
    finally:
        for store in (off, on):
            store.jobs.drop()
            store.close()


def test_an_older_deployments_status_index_gives_way_to_the_one_transitions_also_use(
    settings: Settings,
) -> None:
    older = JobStore(make_settings(settings.redis_url, settings.mongo_url, mongo_db="jobline_old2"))
    try:
        older.jobs.drop()
        older.jobs.create_index([("status", 1), ("_id", -1)])
        # The indexes lists naming no status used before they read a status at a time.
        older.jobs.create_index([("type", 1), ("_id", -1)])
        older.jobs.create_index([("created_at", -1), ("_id", -1)])
        older.jobs.create_index([("owner", 1), ("_id", -1)], partialFilterExpression=OWNED)
        older.jobs.create_index(
            [("owner", 1), ("type", 1), ("_id", -1)], partialFilterExpression=OWNED
        )
        older.ensure_indexes()
        keys = [info["key"] for info in older.jobs.index_information().values()]
        assert [("status", 1), ("_id", -1)] not in keys
        assert [("type", 1), ("_id", -1)] not in keys
        assert [("created_at", -1), ("_id", -1)] not in keys
        assert [("owner", 1), ("_id", -1)] not in keys
        assert [("owner", 1), ("type", 1), ("_id", -1)] not in keys
        assert [("status", 1), ("_id", -1), ("attempts", 1)] in keys
    finally:
        older.jobs.drop()
        older.close()


@pytest.fixture
def lists(settings: Settings) -> Iterator[JobStore]:
    store = store_on(settings, "jobline_lists_by_status", auth=False)
    yield store
    store.jobs.drop()
    store.close()


def test_a_list_naming_no_status_pages_through_every_status_newest_first(
    lists: JobStore,
) -> None:
    # Jobs of every status, two types and two owners (one none), a spell of them
    # within one millisecond (a batch), so that a page's cursor falls inside it.
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    moments = [now_ms - 5_000 + 37 * i for i in range(40)] + [now_ms - 1_000] * 30
    jobs = []
    for i, ms in enumerate(moments):
        owner = "alice" if i % 3 else None
        job = new_job(("noop", "sleep")[i % 2], {}, owner=owner, job_id=ids.new_id(ms))
        job["status"] = STATUSES[i % len(STATUSES)]
        jobs.append(job)
    lists.insert_many(jobs)
    for type, owner in itertools.product((None, "noop"), (None, "alice")):
        expected = sorted(
            (j["_id"] for j in jobs if type in (None, j["type"]) and owner in (None, j["owner"])),
            reverse=True,
        )
        seen: list[str] = []
        cursor = None
        while True:
            page = lists.list(limit=7, cursor=cursor, type=type, owner=owner)
            seen += [job["_id"] for job in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected, (type, owner)


def test_every_write_of_a_job_touches_two_secondary_indexes_and_no_more(
    lists: JobStore,
) -> None:
    # With auth off, the indexes that hold every job whatever its fields: neither
    # partial (owner, expiry) nor sparse (idempotency key).
    whole = [
        info["key"]
        for name, info in lists.jobs.index_information().items()
        if name != "_id_" and not info.get("sparse") and "partialFilterExpression" not in info
    ]
    assert sorted(whole) == [
        [("status", 1), ("_id", -1), ("attempts", 1)],
        [("type", 1), ("status", 1), ("_id", -1)],
    ]


def test_a_list_s_next_first_page_reads_where_the_last_one_reached_in_two_windows(
    settings: Settings,
) -> None:
    # Succeeded jobs 36 ms apart, the newest a second old: the first page grows its
    # windows towards them; the next reads its first millisecond, then all it needs.
    finds: list[str] = []

    class Finds(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name == "find" and event.command.get("find") == "jobs":
                finds.append(event.request_id)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    learning = Settings(**{**settings.model_dump(), "mongo_db": "jobline_list_reach"})
    store = JobStore(learning, client=MongoClient(settings.mongo_url, event_listeners=[Finds()]))
    try:
        store.jobs.drop()
        store.ensure_indexes()
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        jobs = [new_job("noop", {}, job_id=ids.new_id(now_ms - 1_000 - 36 * i)) for i in range(300)]
        for job in jobs:
            job["status"] = "succeeded"
        store.insert_many(jobs)
        pages = []
        for _ in range(2):
            finds.clear()
            pages.append((store.list(limit=20, status=Status.SUCCEEDED), len(finds)))
        (first, first_reads), (second, second_reads) = pages
        assert [j["_id"] for j in second.items] == [j["_id"] for j in first.items]
        newest = sorted((j["_id"] for j in jobs), reverse=True)[:20]
        assert [j["_id"] for j in first.items] == newest
        assert first_reads >= 5  # 1, 8, 64, 512 ms found nothing
        assert second_reads == 2
    finally:
        store.jobs.drop()
        store.close()
