"""Queues and priorities with a real worker: routing by type, most urgent first."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobline.settings import Settings
from tests.conftest import Api, start_worker

JOBS = "/api/v1/jobs"


def test_jobs_wait_on_their_type_s_queue_and_run_most_urgent_first(
    live_api: Api, settings: Settings, tmp_path: Path
) -> None:
    # test_ordered routes to queue test_priority, which the session's worker
    # does not consume: its jobs wait while a default-queue job runs.
    priorities = [0, 9, 5, 0, 9, 3, None, 9, 0, 7, 5, 9]
    items = [
        {"type": "test_ordered", "params": {"label": str(i)}}
        | ({} if p is None else {"priority": p})
        for i, p in enumerate(priorities)
    ]
    response = live_api.post(f"{JOBS}:batch", json={"jobs": items})
    assert response.status_code == 200
    locations = [r["location"] for r in response.json()["results"]]
    live_api.submit_and_wait(JOBS, {"type": "noop"})
    waiting = [live_api.get(loc).json() for loc in locations]
    assert {j["status"] for j in waiting} == {"queued"}
    assert {j["queue"] for j in waiting} == {"test_priority"}

    worker = start_worker(
        settings,
        tmp_path / "worker.log",
        "--queues=test_priority",
        "--concurrency=1",
        "--hostname=ordered@%h",
        name="ordered-worker",
    )
    try:
        done = [live_api.wait_terminal(loc, timeout=60) for loc in locations]
    finally:
        worker.stop()
    assert {j["status"] for j in done} == {"succeeded"}
    ran = sorted(done, key=lambda j: j["started_at"])
    order = [j["priority"] for j in ran]
    assert order == sorted(order, reverse=True), order
    # Equal priorities keep their submission order.
    nines = [j["params"]["label"] for j in ran if j["priority"] == 9]
    assert nines == sorted(nines, key=int)


@pytest.mark.parametrize(("given", "redis"), [(9, 0), (0, 9), (None, 4), (5, 4)])
def test_priorities_are_reversed_for_redis_which_serves_0_first(
    settings: Settings, given: int | None, redis: int
) -> None:
    from jobline.queue import broker_priority, make_celery

    assert broker_priority(make_celery(settings), given) == redis
