"""Queues and priorities with a real worker: routing by type, priority 0 first."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobline.core.settings import Settings
from jobline.engine.queue import broker_priority, make_celery, redis_step
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
    # On Redis a priority runs in its step of Celery's lists: 0; 1-3; 4-6; 7-9.
    steps = [redis_step(j["priority"]) for j in ran]
    assert steps == sorted(steps), [j["priority"] for j in ran]
    assert [j["priority"] for j in ran[:3]] == [0, 0, 0]  # 0 before any other
    # Within a step, jobs keep their submission order.
    for step in set(steps):
        labels = [int(j["params"]["label"]) for j in ran if redis_step(j["priority"]) == step]
        assert labels == sorted(labels), (step, labels)


@pytest.mark.parametrize(
    ("given", "redis", "rabbitmq"),
    [(0, 0, 9), (1, 3, 8), (3, 3, 6), (4, 6, 5), (None, 6, 4), (7, 9, 2), (9, 9, 0)],
)
def test_priority_0_runs_first_on_either_broker(
    settings: Settings, given: int | None, redis: int, rabbitmq: int
) -> None:
    amqp = Settings(**{**settings.model_dump(), "broker_url": "amqp://guest@127.0.0.1:1//"})
    assert broker_priority(make_celery(settings), given) == redis
    assert broker_priority(make_celery(amqp), given) == rabbitmq
