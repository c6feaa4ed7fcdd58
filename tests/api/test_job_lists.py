"""GET /jobs across 1,000 jobs: filters, newest first, cursor pagination."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp

JOBS = "/api/v1/jobs"


@dataclass
class Jobs:
    """The jobs the module's tests list, as the API answered them."""

    api: Api
    all: list[dict[str, Any]]  # newest first

    def ids(self, **where: Any) -> list[str]:
        return [j["id"] for j in self.all if all(j[k] == v for k, v in where.items())]


def walk(api: Api, query: str, limit: int) -> tuple[list[str], int]:
    """Every id a filtered list returns, following next_cursor; and the number of pages."""
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        url = f"{JOBS}?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


def _kind(i: int) -> dict[str, Any]:
    if i % 5 == 0:
        return {"type": "bmi", "params": {"name": f"p{i}", "weight": 50, "height": 170}}
    if i % 5 in (1, 2):
        delay = {"delay_seconds": 3600} if i % 2 else {}
        return {"type": "sleep", "params": {"seconds": 1}, **delay}
    return {"type": "noop"}


@pytest.fixture(scope="module")
def jobs(idle_served: ServedApp, store: JobStore) -> Iterator[Jobs]:
    """1,000 jobs of three types in three statuses, submitted in two batches."""
    store.jobs.delete_many({})
    api = Api(idle_served.base)
    for start in (0, 500):
        batch = [_kind(i) for i in range(start, start + 500)]
        response = api.post(f"{JOBS}:batch", json={"jobs": batch}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 500
    submitted = [r["id"] for r in response.json()["results"]]
    for job_id in submitted[::10]:
        assert api.post(f"{JOBS}/{job_id}/cancel").status_code == 200
    listed = [api.get(f"{JOBS}?limit=500").json(), None]
    listed[1] = api.get(f"{JOBS}?limit=500&cursor={listed[0]['next_cursor']}").json()
    yield Jobs(api, listed[0]["items"] + listed[1]["items"])
    store.jobs.delete_many({})


def test_the_list_holds_every_job_newest_first_in_submission_order(jobs: Jobs) -> None:
    assert len(jobs.all) == 1000
    ids_ = [j["id"] for j in jobs.all]
    assert ids_ == sorted(ids_, reverse=True)
    created = [j["created_at"] for j in jobs.all]
    assert created == sorted(created, reverse=True)
    # A batch lists in the order it was given (newest, i.e. last given, first).
    assert [j["params"].get("name") for j in jobs.all if j["type"] == "bmi"][:3] == [
        "p995",
        "p990",
        "p985",
    ]


@pytest.mark.parametrize("limit", [1, 137, 500])
def test_pages_follow_next_cursor_to_the_end_without_gaps_or_repeats(
    jobs: Jobs, limit: int
) -> None:
    if limit == 1:  # a thousand requests prove no more than a few
        seen, pages = walk(jobs.api, "type=bmi&status=cancelled", limit)
        assert seen == jobs.ids(type="bmi", status="cancelled")
        assert pages == len(seen)
        return
    seen, pages = walk(jobs.api, "", limit)
    assert seen == [j["id"] for j in jobs.all]
    assert pages == -(-1000 // limit)


@pytest.mark.parametrize(
    "where",
    [
        {"type": "noop"},
        {"type": "sleep"},
        {"status": "scheduled"},
        {"status": "cancelled"},
        {"status": "queued"},
        {"type": "sleep", "status": "scheduled"},
        {"type": "bmi", "status": "queued"},
        {"type": "noop", "status": "running"},
        {"type": "unknown_type"},
    ],
)
def test_type_and_status_filters_return_exactly_the_matching_jobs(
    jobs: Jobs, where: dict[str, str]
) -> None:
    query = "&".join(f"{k}={v}" for k, v in where.items())
    seen, _ = walk(jobs.api, query, 200)
    assert seen == jobs.ids(**where)
    if where.get("type") == "sleep" and "status" not in where:
        assert len(seen) == 400


def test_created_after_and_before_select_a_time_window(jobs: Jobs) -> None:
    created = sorted({j["created_at"] for j in jobs.all})
    low, high = created[len(created) // 4], created[3 * len(created) // 4]
    expected = [j["id"] for j in jobs.all if low < j["created_at"] < high]
    seen, _ = walk(jobs.api, f"created_after={low}&created_before={high}", 100)
    assert seen == expected
    after, _ = walk(jobs.api, f"created_after={low}&type=noop", 500)
    assert after == [j["id"] for j in jobs.all if j["created_at"] > low and j["type"] == "noop"]
    before, _ = walk(jobs.api, f"created_before={quote(high.replace('Z', '+00:00'))}", 500)
    assert before == [j["id"] for j in jobs.all if j["created_at"] < high]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=ten",
        "status=done",
        "status=",
        "type=" + "x" * 65,
        "created_after=yesterday",
        "created_after=2026-01-01T00:00:00",
        "created_before=2026-13-01T00:00:00Z",
        "cursor=not-a-cursor",
        "status=queued&status=running",
        "owner=me",
    ],
)
def test_bad_list_queries_get_a_problem(jobs: Jobs, query: str) -> None:
    response = jobs.api.get(f"{JOBS}?{query}")
    assert response.status_code in (400, 422)
    assert response.headers["Content-Type"] == "application/problem+json"
