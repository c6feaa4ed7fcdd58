"""RabbitMQ as the broker (JOBLINE_BROKER_URL=amqp://…), against a real rabbitmq-server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from jobline import jobs
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import DEFAULT_QUEUE, is_amqp, make_celery, queue_depth
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, start_worker
from tests.deploy.conftest import sweeper

ADA = {"name": "Ada", "weight": 55, "height": 170}


def pipeline(settings: Settings, store: JobStore) -> Pipeline:
    """Submitting jobs as the API does, for job types the seed's endpoints do not cover."""
    return Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))


def wait_finished(store: JobStore, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Wait until every job is finished; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [store.get(i) for i in ids]
        if all(job["status"] in ("succeeded", "failed", "cancelled") for job in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"jobs not finished in {timeout}s: {[j['status'] for j in found]}")


def test_the_broker_url_decides_between_redis_and_rabbitmq() -> None:
    assert is_amqp("amqp://guest:guest@rabbit:5672//")
    assert is_amqp("amqps://user:secret@rabbit.example.com:5671/jobline")
    assert not is_amqp("redis://127.0.0.1:6379/0")
    assert not is_amqp("rediss://:secret@redis.example.com:6380/0")


def test_a_calculation_submitted_over_rabbitmq_succeeds(
    rabbit_api: Api, rabbit_settings: Settings, tmp_path: Path
) -> None:
    worker = start_worker(rabbit_settings, tmp_path / "worker.log", "--concurrency=1")
    try:
        ready = rabbit_api.get("/readyz")
        assert ready.status_code == 200, ready.text
        # Redis is checked on its own when it is not the broker.
        checks = {"mongodb": "ok", "broker": "ok", "redis": "ok", "workers": "ok"}
        assert ready.json()["checks"] == checks
        job = rabbit_api.submit_and_wait("/api/v1/calculations", ADA)
    finally:
        worker.stop()
    assert job["status"] == "succeeded"
    assert job["result"] == {"bmi": 19.03, "category": "normal"}
    assert job["attempts"] == 1


@pytest.mark.fault
@pytest.mark.timeout(150)
def test_a_worker_killed_mid_job_on_rabbitmq_has_the_job_run_again_and_succeed_once(
    rabbit_api: Api, rabbit_settings: Settings, rabbit_store: JobStore, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    first = start_worker(rabbit_settings, tmp_path / "a.log", "--concurrency=1", "--hostname=a@%h")
    sweep = sweeper(rabbit_settings, tmp_path / "sweep.log")
    second = None
    try:
        job = pipeline(rabbit_settings, rabbit_store).submit(
            "deploy_nap", {"seconds": 4, "ledger": str(ledger)}
        )
        deadline = time.monotonic() + 30
        while rabbit_store.get(job["_id"])["progress"] <= 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rabbit_store.get(job["_id"])["status"] == "running"
        first.kill_group()  # SIGKILL: no warm shutdown, the message is never acknowledged
        second = start_worker(
            rabbit_settings, tmp_path / "b.log", "--concurrency=1", "--hostname=b@%h"
        )
        (done,) = wait_finished(rabbit_store, [job["_id"]], timeout=90)
    finally:
        for process in (first, second, sweep):
            if process is not None:
                process.stop()
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert done["result"]["attempt"] == 2
    runs = ledger.read_text().splitlines()
    assert runs == [f"{job['_id']} 2 {done['result']['host']}"]


def test_rabbitmq_runs_the_most_urgent_job_first(
    rabbit_api: Api, rabbit_settings: Settings, rabbit_store: JobStore, tmp_path: Path
) -> None:
    p = pipeline(rabbit_settings, rabbit_store)
    # Priority 0 runs first, as on Redis; jobline turns it around for RabbitMQ.
    later = [p.submit("deploy_nap", {"seconds": 0}, priority=9)["_id"] for _ in range(4)]
    urgent = p.submit("deploy_nap", {"seconds": 0}, priority=0)["_id"]
    worker = start_worker(rabbit_settings, tmp_path / "worker.log", "--concurrency=1")
    try:
        finished = wait_finished(rabbit_store, [urgent, *later], timeout=60)
    finally:
        worker.stop()
    assert {job["status"] for job in finished} == {"succeeded"}
    first_started = min(finished, key=lambda job: job["started_at"])
    assert first_started["_id"] == urgent


def test_queue_depth_counts_the_messages_waiting_on_rabbitmq(
    rabbit_api: Api, rabbit_settings: Settings, rabbit_store: JobStore
) -> None:
    p = pipeline(rabbit_settings, rabbit_store)
    for _ in range(3):
        p.submit("deploy_nap", {"seconds": 0})
    assert queue_depth(p.celery, DEFAULT_QUEUE) == 3
    assert queue_depth(p.celery, "a-queue-nobody-declared") == 0


def test_queue_depth_of_a_redis_queue_with_no_messages_is_zero(settings: Settings) -> None:
    # Redis deletes an emptied queue's key; that is an empty queue, not an error.
    assert queue_depth(make_celery(settings), "a-queue-nobody-declared") == 0


def test_queue_depth_on_a_broker_that_is_down_is_broker_unavailable() -> None:
    from jobline.core.errors import BrokerUnavailable

    dead = Settings(
        broker_url=f"amqp://guest:guest@127.0.0.1:{local.free_port()}//",
        connect_timeout_seconds=1,
    )
    with pytest.raises(BrokerUnavailable):
        queue_depth(make_celery(dead), DEFAULT_QUEUE)
