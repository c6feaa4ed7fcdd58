"""Schedules below the API: cron parsing, when they fire next, fires, and RedBeat kept in step."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab, schedule
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis

from jobline import jobs
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.engine.schedules import Schedules, ScheduleSpec, configure, fire, next_run, parse_cron
from jobline.store.jobs import JobStore

ADA = {"name": "Ada", "weight": 55, "height": 170}


@pytest.fixture(scope="module")
def service(settings: Settings, store: JobStore) -> Iterator[Schedules]:
    """The schedule service over the session's servers (no beat, no worker)."""
    p = Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))
    configure(p.celery, settings)
    yield Schedules(p)


@pytest.fixture
def clean(service: Schedules) -> Iterator[Schedules]:
    """No schedules before or after the test, in MongoDB or in RedBeat."""
    service.store.schedules.delete_many({})
    service.sync()
    yield service
    service.store.schedules.delete_many({})
    service.sync()


def entry_exists(service: Schedules, schedule_id: str) -> bool:
    try:
        RedBeatSchedulerEntry.from_key(service._key(schedule_id), app=service.app)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "five fields"),
        ("* * * * * *", "five fields"),
        ("", "five fields"),
        ("60 * * * *", "invalid cron expression"),
        ("* 24 * * *", "invalid cron expression"),
        ("* * 0 * *", "invalid cron expression"),
        ("* * * 13 *", "invalid cron expression"),
        ("* * * * funday", "invalid cron expression"),
        ("0 0 30 2 *", "never occurs"),
        ("*/0 * * * *", "invalid cron expression"),
        ("a-b * * * *", "invalid cron expression"),
    ],
)
def test_a_bad_cron_expression_is_refused_saying_what_is_wrong(
    expression: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cron(expression)


@pytest.mark.parametrize(
    ("expression", "last", "expected"),
    [
        ("*/5 * * * *", datetime(2026, 1, 1, 10, 3, 29, 123000), datetime(2026, 1, 1, 10, 5)),
        ("0 12 * * mon-fri", datetime(2026, 1, 2, 12, 0, 1), datetime(2026, 1, 5, 12, 0)),
        ("30 2 1 * *", datetime(2026, 1, 31, 23, 59), datetime(2026, 2, 1, 2, 30)),
        ("0 0 29 2 *", datetime(2026, 3, 1), datetime(2028, 2, 29)),
    ],
)
def test_a_cron_schedule_next_runs_at_the_first_matching_minute_in_utc(
    expression: str, last: datetime, expected: datetime
) -> None:
    timing = parse_cron(expression)
    assert isinstance(timing, crontab)
    assert next_run(timing, last.replace(tzinfo=UTC)) == expected.replace(tzinfo=UTC)


def test_an_interval_schedule_next_runs_one_interval_after_the_last() -> None:
    last = datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)
    timing = schedule(run_every=timedelta(seconds=90))
    assert next_run(timing, last) == last + timedelta(seconds=90)


def test_creating_and_deleting_a_schedule_adds_and_removes_its_beat_entry(
    clean: Schedules,
) -> None:
    record = clean.create(ScheduleSpec(type="bmi", params=ADA, interval_seconds=60))
    assert entry_exists(clean, record["_id"])
    assert clean.next_run_at(record["_id"]) == record["created_at"] + timedelta(seconds=60)
    clean.delete(record["_id"])
    assert not entry_exists(clean, record["_id"])
    assert clean.next_run_at(record["_id"]) is None


def test_sync_restores_lost_beat_entries_and_drops_orphans(clean: Schedules) -> None:
    kept = clean.create(ScheduleSpec(type="bmi", params=ADA, cron="0 3 * * *"))
    orphan = clean.create(ScheduleSpec(type="bmi", params=ADA, interval_seconds=5))
    get_redis(clean.app).delete(clean._key(kept["_id"]))  # as if Redis lost it
    get_redis(clean.app).zrem(clean.app.redbeat_conf.schedule_key, clean._key(kept["_id"]))
    clean.store.schedules.delete_one({"_id": orphan["_id"]})  # as if deleted while Redis was down
    assert clean.sync() == (1, 1)
    assert entry_exists(clean, kept["_id"])
    assert not entry_exists(clean, orphan["_id"])
    assert clean.sync() == (0, 0)


def test_a_fire_submits_an_ordinary_job_carrying_the_schedule_id(
    clean: Schedules, store: JobStore
) -> None:
    record = clean.create(ScheduleSpec(type="bmi", params=ADA, interval_seconds=60))
    job_id = fire(clean.pipeline, record["_id"])
    assert job_id is not None
    job = store.get(job_id)
    assert job["type"] == "bmi" and job["params"] == ADA
    assert job["schedule_id"] == record["_id"]
    after = clean.get(record["_id"])
    assert after["fires"] == 1 and after["last_job_id"] == job_id and after["last_error"] is None


def test_a_fire_for_a_deleted_schedule_submits_nothing(clean: Schedules, store: JobStore) -> None:
    record = clean.create(ScheduleSpec(type="bmi", params=ADA, interval_seconds=60))
    clean.delete(record["_id"])
    assert fire(clean.pipeline, record["_id"]) is None
    assert store.jobs.count_documents({"schedule_id": record["_id"]}) == 0


def test_a_fire_whose_params_no_longer_validate_is_noted_on_the_schedule(
    clean: Schedules, store: JobStore
) -> None:
    record = clean.create(ScheduleSpec(type="bmi", params=ADA, interval_seconds=60))
    # As if the job type's model had changed since the schedule was made.
    clean.store.schedules.update_one({"_id": record["_id"]}, {"$set": {"params.weight": -5}})
    assert fire(clean.pipeline, record["_id"]) is None
    after = clean.get(record["_id"])
    assert after["fires"] == 1 and after["last_job_id"] is None
    assert "weight" in after["last_error"]
    assert store.jobs.count_documents({"schedule_id": record["_id"]}) == 0
