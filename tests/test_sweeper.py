"""The sweeper's hand-overs at scale: every lost job in one pass, each with a message of its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from jobline.core.errors import StoreUnavailable
from jobline.core.settings import Settings
from jobline.engine import queue, sweeper
from jobline.engine.pipeline import Pipeline
from jobline.local import servers as local
from jobline.store.records import Job, new_job, now
from tests.conftest import pipeline_of_its_own
from tests.support import make_pipeline


@pytest.fixture
def own(settings: Settings) -> Iterator[Pipeline]:
    with pipeline_of_its_own(settings, "jobline_sweeper_test", redis_db=12) as p:
        yield p


def orphans(n: int) -> list[Job]:
    """Running jobs whose worker stopped renewing their lease a minute ago."""
    gone = now() - timedelta(minutes=1)
    return [
        {**new_job("noop", {}), "status": "running", "attempts": 1, "lease_until": gone}
        for _ in range(n)
    ]


def lost_messages(n: int) -> list[Job]:
    """Queued jobs nobody claimed for an hour: their messages were purged."""
    long_ago = now() - timedelta(hours=1)
    return [{**new_job("noop", {}), "updated_at": long_ago} for _ in range(n)]


def assert_handed_on_once_each(p: Pipeline, before: list[Job]) -> None:
    records = {job["_id"]: job for job in p.store.jobs.find({})}
    task_ids = {records[job["_id"]]["task_id"] for job in before}
    assert len(task_ids) == len(before)  # a new task id each
    assert not task_ids & {job["task_id"] for job in before}
    assert {records[job["_id"]]["status"] for job in before} == {"queued"}
    assert queue.queue_depth(p.celery, "default") == len(before)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == sweeper.__name__]


def test_a_sweep_requeues_every_job_whose_worker_vanished_at_once(
    own: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # More than one bulk write's worth: a worker fleet lost at once.
    running = orphans(sweeper.CHUNK + 100)
    own.store.jobs.insert_many(running)
    with caplog.at_level(logging.WARNING, logger=sweeper.__name__):
        assert sweeper.sweep_once(own)["requeued"] == len(running)
    assert_handed_on_once_each(own, running)
    # The first jobs by name, the rest in one line.
    said = warnings_of(caplog)
    named = [line for line in said if line.startswith("job ")]
    assert len(named) == sweeper.NAMED_A_PASS
    assert all("lost its worker (attempt 1); requeued" in line for line in named)
    unnamed = len(running) - sweeper.NAMED_A_PASS
    assert said[len(named) :] == [
        f"{unnamed} more jobs lost their worker; requeued (not named one by one)"
    ]
    assert {job["lease_until"] for job in own.store.jobs.find({})} == {None}
    assert "requeued" not in sweeper.sweep_once(own)  # once


def test_a_sweep_republishes_every_job_whose_message_was_lost_at_once(
    own: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    waiting = lost_messages(sweeper.CHUNK + 100)
    own.store.jobs.insert_many(waiting)
    with caplog.at_level(logging.WARNING, logger=sweeper.__name__):
        assert sweeper.sweep_once(own)["republished"] == len(waiting)
    assert_handed_on_once_each(own, waiting)
    said = warnings_of(caplog)
    assert len(said) == sweeper.NAMED_A_PASS + 1
    unnamed = len(waiting) - sweeper.NAMED_A_PASS
    assert said[-1].startswith(f"{unnamed} more jobs waited ")
    # The queue holds their messages now: none is lost, so none is sent again.
    assert "republished" not in sweeper.sweep_once(own)


def test_a_job_that_moved_on_after_the_sweeper_read_it_is_not_handed_on(own: Pipeline) -> None:
    renewed, finished, lost = orphans(3)
    claimed, cancelled, unclaimed = lost_messages(3)
    own.store.jobs.insert_many([renewed, finished, lost, claimed, cancelled, unclaimed])
    # Meanwhile a worker renewed one lease and finished another job; a third was
    # claimed and a fourth cancelled.
    moved = {
        renewed["_id"]: {"lease_until": now() + timedelta(minutes=1)},
        finished["_id"]: {"status": "succeeded", "lease_until": None},
        claimed["_id"]: {"status": "running", "attempts": 1},
        cancelled["_id"]: {"status": "cancelled"},
    }
    for job_id, changes in moved.items():
        own.store.jobs.update_one({"_id": job_id}, {"$set": changes})
    requeued = own.store.requeue_many(
        [(job, f"r{i}") for i, job in enumerate([renewed, finished, lost])]
    )
    assert [job["_id"] for job in requeued] == [lost["_id"]]
    touched = own.store.touch_many(
        [(job, f"t{i}") for i, job in enumerate([claimed, cancelled, unclaimed])]
    )
    assert [job["_id"] for job in touched] == [unclaimed["_id"]]
    records = {job["_id"]: job for job in own.store.jobs.find({})}
    assert [records[job["_id"]]["status"] for job in (renewed, finished, claimed, cancelled)] == [
        "running", "succeeded", "running", "cancelled"
    ]  # fmt: skip
    assert (records[lost["_id"]]["task_id"], records[unclaimed["_id"]]["task_id"]) == ("r2", "t2")
    for job in (renewed, finished, claimed, cancelled):
        assert records[job["_id"]]["task_id"] == job["task_id"]


def test_a_write_the_store_refuses_in_a_bulk_hand_on_leaves_out_that_job_alone(
    own: Pipeline,
) -> None:
    # A unique index made for this test makes one update of the bulk write fail.
    own.store.jobs.create_index("task_id", unique=True, name="test_unique_task_id")
    try:
        refused, handed, holder = lost_messages(3)
        own.store.jobs.insert_many([refused, handed, holder])
        touched = own.store.touch_many([(refused, holder["task_id"]), (handed, "fresh")])
        assert [job["_id"] for job in touched] == [handed["_id"]]
        records = {job["_id"]: job for job in own.store.jobs.find({})}
        assert records[refused["_id"]]["task_id"] == refused["task_id"]
        assert records[handed["_id"]]["task_id"] == "fresh"
    finally:
        own.store.jobs.drop_index("test_unique_task_id")


def test_two_sweepers_that_read_the_same_lost_message_send_it_once(own: Pipeline) -> None:
    # A worker's own sweep beside `jobline sweep`, or a lease that lapsed: both
    # passes find the job before either hands it on.
    waiting = lost_messages(2)
    own.store.jobs.insert_many(waiting)
    first_read = list(own.store.stale_waiting(timedelta(minutes=1)))
    second_read = list(own.store.stale_waiting(timedelta(minutes=1)))
    assert len(first_read) == len(second_read) == 2
    first = own.store.touch_many([(job, f"first-{i}") for i, job in enumerate(first_read)])
    second = own.store.touch_many([(job, f"second-{i}") for i, job in enumerate(second_read)])
    assert (len(first), second) == (2, [])
    records = {job["_id"]: job for job in own.store.jobs.find({})}
    assert {job["task_id"] for job in records.values()} == {"first-0", "first-1"}
    # One read in a pass of its own, point by point, says the same of a single job.
    stale = first_read[0]
    assert not own.store.touch(stale, "again")
    fresh = own.store.jobs.find_one({"_id": stale["_id"]})
    assert own.store.touch(fresh, fresh["task_id"])
    assert not own.store.touch(fresh, fresh["task_id"])


def test_a_sweep_with_mongodb_down_is_skipped_with_a_warning_not_a_traceback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"mongodb://127.0.0.1:{local.free_port()}"
    down = make_pipeline(
        settings.model_copy(update={"mongo_url": dead, "connect_timeout_seconds": 0.3})
    )
    # Every lazy read a pass makes (its query runs once it is read) says so, as a write does.
    for read in (
        lambda: down.store.held_until(now()),
        lambda: down.store.expired_leases(),
        lambda: down.store.stale_waiting(timedelta(minutes=1)),
        lambda: down.progression().flows.stalled(timedelta(minutes=1)),
    ):
        with pytest.raises(StoreUnavailable, match="MongoDB unreachable"):
            list(read())
    with caplog.at_level(logging.INFO, logger=sweeper.__name__):
        sweeper.sweep_safely(down)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == sweeper.__name__]
    assert len(said) == 1 and said[0][0] == "WARNING", said
    assert said[0][1].startswith("sweep skipped: MongoDB unreachable")
