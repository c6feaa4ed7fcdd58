"""The store's hot path: submissions share inserts, a published job is claimed with one update."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo import MongoClient, monitoring

from jobline.core import ids
from jobline.core.errors import KeyInUse
from jobline.core.settings import Settings
from jobline.store.jobs import JobStore
from jobline.store.records import Status, new_job, now
from jobline.store.workflows import WorkflowStore


class Commands(monitoring.CommandListener):
    """Every command a client sends, by name (what a store call costs in round trips)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.finds: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)
        if event.command_name == "find":
            self.finds.append((event.command["find"], event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def count(self, *names: str) -> int:
        return sum(name in names for name in self.names)


@pytest.fixture
def watched(settings: Settings, store: JobStore) -> Iterator[tuple[JobStore, Commands]]:
    """A store on a client of its own whose commands are recorded."""
    commands = Commands()
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    yield JobStore(settings, client=client), commands
    client.close()


def insert_at_once(store: JobStore, jobs: list[dict[str, Any]]) -> list[BaseException | None]:
    """Insert each job from a thread of its own, all released together; each one's error."""
    outcomes: list[BaseException | None] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def insert(i: int) -> None:
        start.wait()
        try:
            store.insert(jobs[i])
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


@pytest.mark.timeout(60)
def test_concurrent_submissions_are_all_written_in_fewer_round_trips(
    watched: tuple[JobStore, Commands],
) -> None:
    store, commands = watched
    jobs = [new_job("noop", {"i": i}) for i in range(24)]
    outcomes = insert_at_once(store, jobs)
    assert outcomes == [None] * len(jobs)
    ids = [job["_id"] for job in jobs]
    assert store.jobs.count_documents({"_id": {"$in": ids}}) == len(jobs)
    assert commands.count("insert") < len(jobs)


@pytest.mark.timeout(60)
def test_a_taken_idempotency_key_fails_only_its_own_submission_in_a_shared_insert(
    watched: tuple[JobStore, Commands],
) -> None:
    store, _ = watched
    taken = new_job("noop", {})
    taken["idempotency_key"] = f"key-{taken['_id']}"
    store.insert(taken)
    jobs = [new_job("noop", {"i": i}) for i in range(12)]
    jobs[5]["idempotency_key"] = taken["idempotency_key"]
    outcomes = insert_at_once(store, jobs)
    assert isinstance(outcomes[5], KeyInUse)
    assert [o for i, o in enumerate(outcomes) if i != 5] == [None] * 11
    others = [job["_id"] for i, job in enumerate(jobs) if i != 5]
    assert store.jobs.count_documents({"_id": {"$in": others}}) == 11
    assert store.jobs.count_documents({"_id": jobs[5]["_id"]}) == 0


def test_a_queued_job_published_with_its_record_is_claimed_with_one_update_and_no_read(
    watched: tuple[JobStore, Commands],
) -> None:
    store, commands = watched
    job = store.insert(new_job("noop", {"x": 1}))
    commands.names.clear()
    claimed = store.claim(job["_id"], task_id="t-1", record=dict(job))
    assert claimed is not None
    assert commands.names == ["update"]
    assert claimed["attempts"] == 1 and claimed["status"] == Status.RUNNING
    assert claimed["params"] == {"x": 1}
    stored = store.get(job["_id"])
    assert stored["attempts"] == 1 and stored["status"] == Status.RUNNING
    assert stored["task_id"] == "t-1"


def test_a_pure_jobs_start_and_result_are_written_in_one_update_and_no_read(
    watched: tuple[JobStore, Commands],
) -> None:
    store, commands = watched
    job = store.insert(new_job("noop", {"x": 1}))
    commands.names.clear()
    started = store.started(dict(job), task_id="t-1")
    assert commands.names == []  # nothing is written before the job has run
    assert store.get(job["_id"])["status"] == Status.QUEUED
    commands.names.clear()
    assert store.start_and_succeed(started, {"ok": True})
    assert commands.names == ["update"]
    stored = store.get(job["_id"])
    assert stored["status"] == Status.SUCCEEDED and stored["attempts"] == 1
    assert stored["result"] == {"ok": True} and stored["task_id"] == "t-1"
    assert stored["started_at"] <= stored["finished_at"]
    assert stored["lease_until"] is None and stored["worker"]


@pytest.mark.parametrize("why", ["delivered twice", "cancelled while it ran", "claimed meanwhile"])
def test_a_pure_run_whose_job_moved_on_meanwhile_changes_nothing(store: JobStore, why: str) -> None:
    job = store.insert(new_job("noop", {}))
    started = store.started(dict(job), task_id="mine")
    if why == "delivered twice":
        assert store.start_and_succeed(store.started(dict(job)), {"run": "first"})
    elif why == "cancelled while it ran":
        store.cancel(job["_id"])
    else:
        assert store.record_start(store.started(dict(job), task_id="other"))
    before = store.get(job["_id"])
    assert not store.start_and_succeed(started, {"run": "second"})
    assert not store.record_start(started)
    assert store.get(job["_id"]) == before


def test_a_pure_jobs_start_written_later_is_a_claim_of_its_attempt(store: JobStore) -> None:
    job = store.insert(new_job("noop", {}))
    started = store.started(dict(job), task_id="t-1")
    assert store.record_start(started)
    running = store.get(job["_id"])
    assert running["status"] == Status.RUNNING and running["attempts"] == 1
    assert running["lease_until"] > started["started_at"] and running["task_id"] == "t-1"
    # From here the attempt is an ordinary claimed one.
    assert store.succeed(job["_id"], 1, {"done": 1})
    assert store.get(job["_id"])["result"] == {"done": 1}


@pytest.mark.parametrize(
    "why",
    ["delivered twice", "cancelled before it ran", "restarted since (a stale record)"],
)
def test_a_record_the_store_has_moved_past_never_claims_the_job(store: JobStore, why: str) -> None:
    job = store.insert(new_job("noop", {}))
    published = dict(job)
    if why == "delivered twice":
        assert store.claim(job["_id"], record=dict(published)) is not None
    elif why == "cancelled before it ran":
        store.cancel(job["_id"])
    else:
        store.cancel(job["_id"])
        restarted = store.restart(job["_id"], task_id="again")
        assert store.claim(job["_id"], record=dict(restarted)) is not None
    assert store.claim(job["_id"], record=published) is None


def test_a_job_parked_behind_a_limit_is_never_republished_as_lost(store: JobStore) -> None:
    queue = f"parking-{ids.new_id()}"  # a queue of this test's own
    parked, lost = (store.insert(new_job("noop", {}, queue=queue)) for _ in range(2))
    assert store.note_held(parked, "owner a has 1 running")
    stale = {job["_id"] for job in store.stale_waiting(timedelta(seconds=-60), [queue])}
    assert lost["_id"] in stale
    assert parked["_id"] not in stale  # its message waits on the limit's list in Redis


def test_every_read_a_sweep_makes_for_lost_and_stalled_work_is_equality_on_status(
    watched: tuple[JobStore, Commands],
) -> None:
    # SecantusDB reads the whole collection, under its one lock, for a status given
    # as $in or a filter under a top-level $or (a second every sweep at 30,000
    # jobs, measured); an equality rides the status index. Its explain says
    # COLLSCAN either way, so the shape of each filter is what is checked here.
    store, commands = watched
    flows = WorkflowStore(store.db)
    flows.ensure_indexes()
    list(store.stale_waiting(timedelta(seconds=60), ["default", "align"]))
    list(store.expired_leases())
    list(store.held_until(now()))
    list(flows.stalled(timedelta(seconds=60)))
    assert len(commands.finds) >= 4
    for collection, query in commands.finds:
        assert isinstance(query.get("status"), str), (collection, query)
        assert not any(field.startswith("$") for field in query), (collection, query)
        assert not any(isinstance(v, dict) and "$in" in v for v in query.values()), query


@pytest.mark.parametrize("query", ["w=0", "W=0&journal=true", "retryWrites=false&w=0"])
def test_a_mongodb_url_asking_for_unacknowledged_writes_is_refused_by_name(query: str) -> None:
    # What a client is told was accepted must be stored: jobline will not run on w=0.
    with pytest.raises(ValidationError, match="w=0") as caught:
        Settings(mongo_url=f"mongodb://127.0.0.1:27017/?{query}")
    assert caught.value.errors()[0]["loc"] == ("mongo_url",)


def test_the_api_on_a_url_with_w0_stops_with_the_reason_and_no_traceback() -> None:
    env = {**os.environ, "JOBLINE_MONGO_URL": "mongodb://127.0.0.1:27017/?w=0"}
    done = subprocess.run(
        [sys.executable, "-m", "jobline", "api", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unacknowledged writes (w=0)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_url_with_w1_or_majority_is_accepted() -> None:
    for w in ("1", "majority", "2"):
        assert Settings(mongo_url=f"mongodb://h/?w={w}").mongo_url.endswith(f"w={w}")
