"""Delayed jobs: scheduled until run_at, never started early, kept across worker restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobline import jobs
from jobline.core.settings import Settings
from jobline.engine import queue, sweeper
from jobline.engine.delays import When, holds, horizon
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.records import Job, new_job, now
from tests.conftest import (
    TERMINAL,
    Api,
    make_settings,
    pipeline_of_its_own,
    start_worker,
)

ADA = {"name": "Ada", "weight": 55, "height": 170}
JOBS = "/api/v1/jobs"


def make_pipeline(settings: Settings, store: JobStore) -> Pipeline:
    return Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))


class Sweeper:
    """The real sweeper loop, in a thread, as `jobline sweep` runs it."""

    def __init__(self, p: Pipeline) -> None:
        self.stop = threading.Event()
        interval = p.settings.sweep_interval_seconds
        self.thread = threading.Thread(
            target=sweeper.run, args=(p, interval, self.stop), daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def pipeline(settings: Settings, store: JobStore) -> Iterator[Pipeline]:
    """A pipeline over the session's servers, with a sweeper releasing due jobs."""
    p = make_pipeline(settings, store)
    running = Sweeper(p)
    yield p
    running.close()


def watch_until_finished(store: JobStore, job: Job, timeout: float = 40) -> list[Job]:
    """Every state the job was seen in, polled until it finished."""
    seen = [job]
    deadline = time.monotonic() + timeout
    while seen[-1]["status"] not in TERMINAL:
        assert time.monotonic() < deadline, f"job still {seen[-1]['status']}: {seen[-1]}"
        time.sleep(0.05)
        seen.append(store.get(job["_id"]))
    return seen


@pytest.mark.parametrize(
    ("delay", "held"),
    [(1.5, False), (5.0, True)],
    ids=["published-with-an-eta", "held-until-due"],
)
def test_a_delayed_job_is_scheduled_until_its_time_and_starts_soon_after(
    pipeline: Pipeline, store: JobStore, worker: local.Process, delay: float, held: bool
) -> None:
    job = pipeline.submit("bmi", ADA, delay_seconds=delay)
    run_at = job["run_at"]
    assert job["status"] == "scheduled"
    assert bool(job.get("held")) is held
    seen = [job]
    while now() < run_at:
        current = store.get(job["_id"])
        if now() < run_at:  # a slow read may answer after run_at, rightly running
            assert current["status"] == "scheduled", "started before its run_at"
            assert current["started_at"] is None
        seen.append(current)
        time.sleep(0.1)
    final = watch_until_finished(store, seen[-1])[-1]
    assert final["status"] == "succeeded"
    assert final["started_at"] >= run_at
    # Soon after: within a couple of sweeps (the machine is shared, so not tight).
    assert final["started_at"] - run_at < timedelta(seconds=10)


def test_run_at_in_the_past_runs_at_once(pipeline: Pipeline, store: JobStore, worker: Any) -> None:
    job = pipeline.submit("bmi", ADA, run_at=now() - timedelta(hours=1))
    assert job["status"] == "queued"
    assert watch_until_finished(store, job, timeout=30)[-1]["status"] == "succeeded"


def test_a_cancelled_delayed_job_never_runs(
    pipeline: Pipeline, store: JobStore, worker: local.Process
) -> None:
    job = pipeline.submit("bmi", ADA, delay_seconds=horizon(pipeline.settings).total_seconds() + 1)
    assert job.get("held") is True
    assert pipeline.cancel(job["_id"])["status"] == "cancelled"
    # Wait past its time and two more sweeps: nothing may claim it.
    time.sleep(
        (job["run_at"] - now()).total_seconds() + 2 * pipeline.settings.sweep_interval_seconds
    )
    after = store.get(job["_id"])
    assert after["status"] == "cancelled"
    assert after["attempts"] == 0
    assert after["started_at"] is None


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_delayed_jobs_survive_a_worker_killed_while_they_wait(
    redis_url: str, mongo_url: str, tmp_path: Path
) -> None:
    # A broker database and a job database of their own: only this test's worker.
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/6", mongo_url, mongo_db="jobline_delay_fault"
    )
    store = JobStore(settings)
    store.ensure_indexes()
    p = make_pipeline(settings, store)
    first = start_worker(settings, tmp_path / "first.log", "--concurrency=1")
    running = Sweeper(p)
    second = None
    try:
        # One short delay, whose ETA message the first worker holds in memory,
        # and one long delay, held in MongoDB with no message at all.
        in_memory = p.submit("bmi", ADA, delay_seconds=2)
        held = p.submit("bmi", ADA, delay_seconds=horizon(settings).total_seconds() + 4)
        assert not in_memory.get("held") and held.get("held")
        deadline = time.monotonic() + 20
        while queue.queue_depth(p.celery, "default") > 0:  # the worker reserved the ETA message
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first.kill_group()
        first.stop()
        second = start_worker(settings, tmp_path / "second.log", "--concurrency=1")
        for job in (held, in_memory):
            # The ETA message comes back through the sweeper once the job is overdue.
            final = watch_until_finished(store, job, timeout=60)[-1]
            assert final["status"] == "succeeded", final
            assert final["started_at"] >= job["run_at"]
        # The held job was never in a worker's memory: it ran on time.
        assert store.get(held["_id"])["started_at"] - held["run_at"] < timedelta(seconds=10)
    finally:
        running.close()
        first.stop()
        if second is not None:
            second.stop()
        store.jobs.drop()
        store.close()


# -- over HTTP ------------------------------------------------------------------


def test_a_job_posted_with_delay_seconds_waits_scheduled_then_runs(
    pipeline: Pipeline, live_api: Api
) -> None:
    response = live_api.post(JOBS, json={"type": "noop", "delay_seconds": 4})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "scheduled"
    run_at = datetime.fromisoformat(job["run_at"])
    location = response.headers["Location"]
    while datetime.now(UTC) < run_at:
        status = live_api.get(location).json()["status"]
        # A slow answer may come back after run_at; one read before it must show it waiting.
        assert status == "scheduled" or datetime.now(UTC) >= run_at, status
        time.sleep(0.1)
    final = live_api.wait_terminal(location, timeout=30)
    assert final["status"] == "succeeded"
    assert datetime.fromisoformat(final["started_at"]) >= run_at


def test_a_batch_holds_its_far_jobs_and_publishes_its_near_ones(
    pipeline: Pipeline, live_api: Api, store: JobStore
) -> None:
    response = live_api.post(
        f"{JOBS}:batch",
        json={"jobs": [{"type": "noop", "delay_seconds": 3600}, {"type": "noop"}]},
    )
    assert response.status_code == 200, response.text
    far, near = (r["id"] for r in response.json()["results"])
    assert store.get(far)["held"] is True and store.get(far)["status"] == "scheduled"
    assert live_api.wait_terminal(f"{JOBS}/{near}")["status"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "noop", "run_at": "2030-01-01T00:00:00"}, ["run_at"]),
        ({"type": "noop", "run_at": "2999-01-01T00:00:00Z"}, ["run_at"]),
        ({"type": "noop", "delay_seconds": -5}, ["delay_seconds"]),
        ({"type": "noop", "delay_seconds": 400 * 86400}, ["delay_seconds"]),
    ],
)
def test_a_bad_run_at_or_delay_over_http_is_a_422_naming_it(
    idle_api: Api, body: dict[str, Any], loc: list[str]
) -> None:
    response = idle_api.post(JOBS, json=body)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert [e["loc"] for e in response.json()["errors"]] == [loc]


# -- validation, as the API applies it ----------------------------------------

SOON = (datetime.now(UTC) + timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"run_at": "2030-01-01T00:00:00"}, ("run_at",)),  # no time zone
        ({"run_at": "tomorrow"}, ("run_at",)),
        ({"run_at": (datetime.now(UTC) + timedelta(days=400)).isoformat()}, ("run_at",)),
        ({"delay_seconds": -1}, ("delay_seconds",)),
        ({"delay_seconds": 10**9}, ("delay_seconds",)),
        ({"delay_seconds": "nan"}, ("delay_seconds",)),
        ({"delay_seconds": 5, "run_at": SOON}, ()),
    ],
)
def test_bad_run_at_or_delay_is_refused_naming_the_field(body: dict[str, Any], loc: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        When.model_validate(body)
    assert [tuple(e["loc"]) for e in caught.value.errors()] == [loc]


def test_run_at_is_read_in_utc_and_delay_counts_from_now(pipeline: Pipeline) -> None:
    at = (now() + timedelta(days=30)).replace(microsecond=0)
    local_text = at.astimezone(timezone(timedelta(hours=2))).isoformat()
    when = When.model_validate({"run_at": local_text})
    assert when.run_at == at and when.run_at.utcoffset() == timedelta(0)
    held = pipeline.submit("noop", {}, run_at=when.run_at)
    before = now()
    delayed = pipeline.submit("noop", {}, delay_seconds=3600)
    try:
        assert held["run_at"] == at
        assert before + timedelta(seconds=3600) <= delayed["run_at"] <= now() + timedelta(hours=1)
        assert {held["status"], delayed["status"]} == {"scheduled"}
    finally:
        for job in (held, delayed):
            pipeline.cancel(job["_id"])


def test_only_jobs_beyond_the_horizon_are_held(settings: Settings) -> None:
    ahead = now() + horizon(settings)
    scheduled = {"status": "scheduled"}
    assert holds({**scheduled, "run_at": ahead + timedelta(seconds=5)}, settings)
    assert not holds({**scheduled, "run_at": ahead - timedelta(seconds=1)}, settings)
    assert not holds({"status": "queued", "run_at": None}, settings)


@pytest.fixture
def release_pipeline(settings: Settings) -> Iterator[Pipeline]:
    with pipeline_of_its_own(settings, "jobline_release_test", redis_db=10) as p:
        yield p


def held_jobs(n: int, seconds_ahead: float) -> list[Job]:
    run_at = now() + timedelta(seconds=seconds_ahead)
    return [{**new_job("noop", {}, run_at=run_at), "held": True} for _ in range(n)]


def test_a_sweep_releases_every_held_job_due_at_once_each_with_its_message(
    release_pipeline: Pipeline,
) -> None:
    p = release_pipeline
    # A batch submitted for one moment: more than one bulk write's worth.
    batch = held_jobs(sweeper.CHUNK * 2 + 100, seconds_ahead=1.5)
    p.store.jobs.insert_many(batch)
    later = held_jobs(3, seconds_ahead=3600)  # beyond the horizon: still held
    p.store.jobs.insert_many(later)
    assert sweeper.release_due(p) == len(batch)
    records = {job["_id"]: job for job in p.store.jobs.find({})}
    assert not [j for j in batch if records[j["_id"]]["held"]]
    assert all(records[j["_id"]]["held"] for j in later)
    task_ids = {records[j["_id"]]["task_id"] for j in batch}
    assert len(task_ids) == len(batch) and not task_ids & {j["task_id"] for j in batch}
    assert queue.queue_depth(p.celery, "default") == len(batch)
    assert sweeper.release_due(p) == 0  # released once


def test_a_job_released_or_cancelled_meanwhile_is_not_released_again(
    release_pipeline: Pipeline,
) -> None:
    p = release_pipeline
    first, cancelled, free = held_jobs(3, seconds_ahead=1)
    p.store.jobs.insert_many([first, cancelled, free])
    # Another sweeper got to one, and the user cancelled another, after this one read them.
    assert p.store.release_many([(first, "another-sweepers-task")])
    p.store.jobs.update_one({"_id": cancelled["_id"]}, {"$set": {"status": "cancelled"}})
    done = p.store.release_many(
        [(job, f"task-{i}") for i, job in enumerate([first, cancelled, free])]
    )
    assert [job["_id"] for job in done] == [free["_id"]]
    assert p.store.jobs.find_one({"_id": first["_id"]})["task_id"] == "another-sweepers-task"
    assert p.store.jobs.find_one({"_id": cancelled["_id"]})["held"] is True
