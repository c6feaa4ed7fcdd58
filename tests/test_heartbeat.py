"""Heartbeats: one thread per process renews the lease of every attempt running in it."""

from __future__ import annotations

import threading
import time

import pytest

from jobline.core.errors import JobCancelled, StoreUnavailable
from jobline.engine.heartbeat import Heartbeat
from jobline.store.jobs import JobStore
from jobline.store.records import new_job


def claimed(store: JobStore) -> dict:
    job = store.insert(new_job("noop", {}))
    got = store.claim(job["_id"], record=dict(job))
    assert got is not None
    return got


@pytest.mark.timeout(30)
def test_one_thread_renews_the_lease_of_every_running_attempt_and_none_after_stop(
    store: JobStore,
) -> None:
    jobs = [claimed(store) for _ in range(3)]
    beats = [Heartbeat(store, j["_id"], j["attempts"], interval=0.2).start() for j in jobs]
    try:
        time.sleep(1.5)
        assert len([t for t in threading.enumerate() if t.name == "jobline-heartbeat"]) == 1
        for job in jobs:
            assert store.get(job["_id"])["lease_until"] > job["lease_until"]
    finally:
        for beat in beats:
            beat.stop()
    time.sleep(0.5)
    stopped = {j["_id"]: store.get(j["_id"])["lease_until"] for j in jobs}
    time.sleep(1.0)
    assert {j["_id"]: store.get(j["_id"])["lease_until"] for j in jobs} == stopped


@pytest.mark.timeout(30)
def test_an_attempt_that_lost_its_job_is_told_by_the_shared_heartbeat(store: JobStore) -> None:
    job = claimed(store)
    told = threading.Event()
    beat = Heartbeat(store, job["_id"], job["attempts"], interval=0.2, on_lost=told.set).start()
    try:
        store.cancel(job["_id"])
        assert told.wait(5)
        assert beat.lost.is_set()
    finally:
        beat.stop()


def pending(store: JobStore, delay: float) -> tuple[dict, Heartbeat, list[bool]]:
    """A pure attempt started but not claimed, its heartbeat to write the claim after ``delay``."""
    job = store.started(dict(store.insert(new_job("noop", {}))))
    writes: list[bool] = []

    def write() -> bool:
        writes.append(store.record_start(job))
        return writes[-1]

    beat = Heartbeat(
        store,
        job["_id"],
        job["attempts"],
        interval=10,
        pending_start=write,
        start_by=time.monotonic() + delay,
    )
    return job, beat.start(), writes


@pytest.mark.timeout(30)
def test_a_pending_start_is_written_by_the_heartbeat_once_its_delay_has_passed(
    store: JobStore,
) -> None:
    job, beat, writes = pending(store, 0.3)
    try:
        assert store.get(job["_id"])["status"] == "queued"
        deadline = time.monotonic() + 5
        while not writes and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writes == [True]
        assert store.get(job["_id"])["status"] == "running"
        # Written once: the end must now record from the claim.
        assert not beat.finish_unstarted()
    finally:
        beat.stop()
    assert writes == [True]


@pytest.mark.timeout(30)
def test_a_progress_report_writes_a_pending_start_first_and_an_ended_one_is_never_written(
    store: JobStore,
) -> None:
    job, beat, writes = pending(store, 60)
    try:
        beat.report(0.5, "half")
        assert writes == [True]
        assert store.get(job["_id"])["status"] == "running"
    finally:
        beat.stop()
    other, beat, writes = pending(store, 0.2)
    beat.stop()
    assert beat.finish_unstarted()  # the end writes start and result together
    time.sleep(0.6)
    assert writes == [] and store.get(other["_id"])["status"] == "queued"


@pytest.mark.timeout(30)
def test_a_pending_start_of_a_job_cancelled_meanwhile_tells_the_attempt_it_lost(
    store: JobStore,
) -> None:
    job, beat, writes = pending(store, 0.2)
    told = threading.Event()
    beat.on_lost = told.set
    try:
        store.cancel(job["_id"])
        assert told.wait(5)
        assert writes == [False] and beat.lost.is_set()
        with pytest.raises(JobCancelled):
            beat.report(0.9)
    finally:
        beat.stop()
    assert store.get(job["_id"])["attempts"] == 0


def test_a_pending_start_that_could_not_be_written_is_tried_again_later_not_at_once(
    store: JobStore,
) -> None:
    def unreachable() -> bool:
        raise StoreUnavailable("MongoDB away")

    beat = Heartbeat(store, "some-job", 1, interval=10, pending_start=unreachable, start_by=0.0)
    assert beat.next_due() == 0.0
    with pytest.raises(StoreUnavailable):
        beat.tick()
    assert beat.next_due() > 0.1  # the shared thread waits before the next try
    assert beat.pending_start is not None and not beat.lost.is_set()
