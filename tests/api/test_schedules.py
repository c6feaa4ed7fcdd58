"""Recurring schedules over HTTP, fired by a real `jobline beat` into ordinary jobs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobline import jobs
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import DEFAULT_QUEUE, make_celery, queue_depth
from jobline.engine.schedules import Schedules, ScheduleSpec, configure
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.records import now
from tests.conftest import TERMINAL, Api, make_settings, settings_env
from tests.support import wait_until

SCHEDULES = "/api/v1/schedules"
ADA = {"name": "Ada", "weight": 55, "height": 170}


@pytest.fixture(scope="module")
def beat(
    redis_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local.Process]:
    """`jobline beat`, looking for new schedules twice a second."""
    log = tmp_path_factory.mktemp("beat") / "beat.log"
    settings = make_settings(redis_url, mongo_url, beat_max_loop_seconds=0.5)
    process = local.Process("beat", local.jobline_argv("beat"), env=settings_env(settings), log=log)
    process.start()
    wait_for_log(log, "beat: Starting", process)
    yield process
    process.stop()


def wait_for_log(log: Path, text: str, process: local.Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ""):
        assert process.alive(), f"beat exited; see {log}"
        assert time.monotonic() < deadline, f"{text!r} not in {log}"
        time.sleep(0.1)


@pytest.fixture
def schedules_api(api: Api, store: JobStore) -> Iterator[Api]:
    """The API, with every schedule deleted afterwards so none keeps firing."""
    yield api
    body = api.get(f"{SCHEDULES}?limit=500").json()
    for item in body["items"]:
        api.delete(f"{SCHEDULES}/{item['id']}")


def jobs_of(store: JobStore, schedule_id: str) -> list[dict[str, Any]]:
    return list(store.jobs.find({"schedule_id": schedule_id}))


def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(SCHEDULES, json=body)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{SCHEDULES}/{response.json()['id']}"
    return response.json()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_an_interval_schedule_fires_repeatedly_into_ordinary_jobs_that_succeed(
    schedules_api: Api, store: JobStore, worker: local.Process, beat: local.Process
) -> None:
    schedule = create(schedules_api, {"type": "bmi", "params": ADA, "interval_seconds": 1})
    assert schedule["interval_seconds"] == 1 and schedule["cron"] is None
    deadline = time.monotonic() + 45
    done: list[dict[str, Any]] = []
    while len(done) < 3:
        assert time.monotonic() < deadline, f"{len(done)} jobs finished"
        time.sleep(0.2)
        done = [j for j in jobs_of(store, schedule["id"]) if j["status"] in TERMINAL]
    for job in done:
        assert job["status"] == "succeeded"
        assert job["type"] == "bmi"
        assert job["result"] == {"bmi": 19.03, "category": "normal"}
    listed = schedules_api.get("/api/v1/jobs?type=bmi&limit=500").json()["items"]
    from_schedule = {j["id"] for j in listed if j["schedule_id"] == schedule["id"]}
    assert {j["_id"] for j in done} <= from_schedule, "fired jobs are ordinary jobs in GET /jobs"
    created = sorted(j["created_at"] for j in done)
    assert created[-1] - created[0] >= timedelta(seconds=1.5), "fired every second, not at once"
    again = schedules_api.get(f"{SCHEDULES}/{schedule['id']}").json()
    assert again["fires"] >= 3
    assert again["last_job_id"] in {j["_id"] for j in jobs_of(store, schedule["id"])}
    assert again["last_error"] is None


def test_a_cron_schedule_is_accepted_and_shows_its_next_run(schedules_api: Api) -> None:
    before = now()
    schedule = create(schedules_api, {"type": "bmi", "params": ADA, "cron": "*/5  * * * *"})
    assert schedule["cron"] == "*/5 * * * *"
    assert schedule["interval_seconds"] is None
    next_run = parse_time(schedule["next_run_at"])
    assert before < next_run <= before + timedelta(minutes=5)
    assert next_run.minute % 5 == 0 and next_run.second == 0
    fetched = schedules_api.get(f"{SCHEDULES}/{schedule['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["next_run_at"] == schedule["next_run_at"]
    assert fetched.json()["fires"] == 0 and fetched.json()["last_fired_at"] is None


def test_an_interval_schedule_first_fires_one_interval_after_it_is_made(
    schedules_api: Api,
) -> None:
    schedule = create(schedules_api, {"type": "bmi", "params": ADA, "interval_seconds": 3600})
    created = parse_time(schedule["created_at"])
    assert parse_time(schedule["next_run_at"]) - created == timedelta(hours=1)


def test_deleting_a_schedule_stops_it_firing(
    schedules_api: Api, store: JobStore, worker: local.Process, beat: local.Process
) -> None:
    schedule = create(schedules_api, {"type": "bmi", "params": ADA, "interval_seconds": 1})
    deadline = time.monotonic() + 30
    while not jobs_of(store, schedule["id"]):
        assert time.monotonic() < deadline, "the schedule never fired"
        time.sleep(0.1)
    assert schedules_api.delete(f"{SCHEDULES}/{schedule['id']}").status_code == 204
    deleted_at = now()
    assert schedules_api.get(f"{SCHEDULES}/{schedule['id']}").status_code == 404
    assert schedules_api.delete(f"{SCHEDULES}/{schedule['id']}").status_code == 404
    time.sleep(4)  # four intervals: it would have fired again by now
    # A fire already under way when it was deleted may still land just after.
    late = [
        j
        for j in jobs_of(store, schedule["id"])
        if j["created_at"] > deleted_at + timedelta(seconds=1.5)
    ]
    assert late == []


def test_schedules_are_listed_newest_first_a_page_at_a_time(schedules_api: Api) -> None:
    made = [
        create(schedules_api, {"type": "bmi", "params": ADA, "cron": f"{m} 3 * * *"})["id"]
        for m in range(5)
    ]
    seen: list[str] = []
    url = f"{SCHEDULES}?limit=2"
    while url:
        body = schedules_api.get(url).json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"] if item["id"] in made]
        url = f"{SCHEDULES}?limit=2&cursor={body['next_cursor']}" if body["next_cursor"] else ""
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "bmi", "params": ADA, "cron": "* * *"}, ["cron"]),
        ({"type": "bmi", "params": ADA, "cron": "61 * * * *"}, ["cron"]),
        ({"type": "bmi", "params": ADA, "cron": "0 0 31 2 *"}, ["cron"]),
        ({"type": "bmi", "params": ADA, "cron": "*/0 * * * *"}, ["cron"]),
        ({"type": "bmi", "params": ADA, "interval_seconds": 0}, ["interval_seconds"]),
        ({"type": "bmi", "params": ADA, "interval_seconds": 1.5}, ["interval_seconds"]),
        ({"type": "bmi", "params": ADA}, []),
        ({"type": "bmi", "params": ADA, "cron": "* * * * *", "interval_seconds": 5}, []),
        ({"type": "bmi", "params": {**ADA, "weight": -1}, "interval_seconds": 5}, ["params", "weight"]),  # noqa: E501
        ({"type": "bmi", "params": {"name": "Ada"}, "interval_seconds": 5}, ["params", "weight"]),
        ({"type": "bmi", "params": ADA, "interval_seconds": 5, "when": "now"}, ["when"]),
        ({"type": "bmi", "params": ADA, "interval_seconds": 5, "callback_url": "ftp://x/"}, ["callback_url"]),  # noqa: E501
        ({"params": ADA, "interval_seconds": 5}, ["type"]),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_refused_with_a_problem_naming_the_field(
    schedules_api: Api, store: JobStore, body: dict[str, Any], loc: list[str]
) -> None:
    before = list(store.db["schedules"].find())
    response = schedules_api.post(SCHEDULES, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert list(store.db["schedules"].find()) == before  # nothing stored


def test_an_unknown_job_type_is_refused_with_422(schedules_api: Api) -> None:
    response = schedules_api.post(
        SCHEDULES, json={"type": "no_such_type", "params": {}, "interval_seconds": 5}
    )
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "no_such_type" in response.json()["detail"]
    assert response.json()["errors"][0]["loc"] == ["type"]
    assert schedules_api.get(SCHEDULES).json()["items"] == []


@pytest.mark.parametrize("schedule_id", ["nope", "0193c3c0-0000-7000-8000-000000000000"])
def test_an_unknown_schedule_is_404(schedules_api: Api, schedule_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = schedules_api.request(method, f"{SCHEDULES}/{schedule_id}")
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"


def test_a_schedule_s_record_fields_and_time_zone(schedules_api: Api) -> None:
    schedule = create(
        schedules_api,
        {"type": "bmi", "params": ADA, "cron": "0 12 * * mon-fri", "callback_url": "http://127.0.0.1:9/h"},
    )  # fmt: skip
    assert schedule["params"] == ADA
    assert schedule["callback_url"] == "http://127.0.0.1:9/h"
    next_run = parse_time(schedule["next_run_at"])
    assert next_run.tzinfo is not None and next_run.utcoffset() == timedelta(0)
    assert next_run.astimezone(UTC).hour == 12 and next_run.weekday() < 5


@pytest.mark.timeout(120)
def test_beat_rides_out_a_redis_stall_and_fires_again_after_it(
    mongo_url: str, tmp_path: Path
) -> None:
    redis_server, redis_url = local.start_redis(tmp_path / "redis", aof=False)
    settings = make_settings(
        redis_url, mongo_url, mongo_db="jobline_beat_stall", beat_max_loop_seconds=0.5
    )
    store = JobStore(settings)
    p = Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))
    configure(p.celery, settings)
    Schedules(p).create(ScheduleSpec(type="bmi", params=ADA, interval_seconds=1))
    log = tmp_path / "beat.log"
    beat = local.Process("beat", local.jobline_argv("beat"), env=settings_env(settings), log=log)
    try:
        beat.start()
        wait_for_log(log, "beat: Starting", beat)
        wait_until(lambda: queue_depth(p.celery, DEFAULT_QUEUE) >= 1, 30, "a first fire")
        # Longer than beat's socket timeout (5 s): RedBeat's lock extension used to raise.
        os.kill(redis_server.pid, signal.SIGSTOP)
        time.sleep(8)
        os.kill(redis_server.pid, signal.SIGCONT)
        fired = queue_depth(p.celery, DEFAULT_QUEUE)
        wait_until(lambda: queue_depth(p.celery, DEFAULT_QUEUE) > fired, 30, "a fire after it")
        assert beat.alive(), log.read_text()[-2000:]
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
        beat.stop()
        store.db.client.drop_database(settings.mongo_db)
        store.close()
        redis_server.stop()
