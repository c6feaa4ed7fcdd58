"""Heartbeats: one thread per process renews the lease of every attempt running in it."""

from __future__ import annotations

import threading
import time

import pytest

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
