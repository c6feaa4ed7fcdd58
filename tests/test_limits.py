"""Fair shares: JOBLINE_OWNER_MAX_RUNNING and a type's max_running, counted in Redis.

The first tests drive the slots directly against the session's Redis (on a
database of their own); the last ones run real worker processes with an owner
limit of one, and kill one of them while it holds a slot.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from jobline import jobs
from jobline.core import ids
from jobline.core.errors import JobNotFound
from jobline.core.settings import Settings
from jobline.engine import queue
from jobline.engine.limits import PREFIX, REGISTRY, WAKING, Gate, Held, Limits, Redundant
from jobline.engine.pipeline import Submission
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.views import job_view
from tests.conftest import idle_settings, start_worker
from tests.support import make_pipeline, wait_all_terminal, wait_until

TERMINAL = ["succeeded", "failed", "cancelled"]


def a_job(owner: str, type: str = "test_slow", task_id: str | None = None) -> dict[str, Any]:
    """A job record as the store reads it before a claim (never stored here)."""
    return {
        "_id": ids.new_id(),
        "type": type,
        "owner": owner,
        "attempts": 0,
        "task_id": task_id or ids.new_id(),
        "queue": "default",
        "priority": 5,
    }


def admit(limits: Limits, celery: Celery, job: dict[str, Any]) -> Gate:
    """The gate a delivery of ``job`` passes, once it has taken its slots."""
    gate = Gate(limits, celery, job["task_id"])
    gate(job)
    return gate


@pytest.fixture
def slots(settings: Settings) -> Iterator[tuple[Settings, Celery]]:
    """Settings on a Redis database no worker consumes, with no slot or waiter left in it."""
    limited = idle_settings(settings, owner_max_running=1)
    client = redis.Redis.from_url(limited.redis_url)
    client.flushdb()
    yield limited, queue.make_celery(limited)
    client.flushdb()


def test_a_job_over_its_owners_limit_is_parked_and_woken_when_the_slot_is_released(
    slots: tuple[Settings, Celery],
) -> None:
    settings, celery = slots
    limits = Limits(settings, jobs.load(settings.job_module_list))
    first = admit(limits, celery, a_job("alice"))
    second = a_job("alice")
    with pytest.raises(Held, match="owner alice has 1 running"):
        admit(limits, celery, second)
    admit(limits, celery, a_job("bob"))  # another owner has a slot of its own
    assert queue.queue_depth(celery, "default") == 0  # parked, not retried
    first.release()
    assert queue.queue_depth(celery, "default") == 1  # the parked job, published again
    admit(limits, celery, second)  # and it now gets the slot


def test_a_type_with_max_running_one_holds_a_second_job_whoever_owns_it(
    slots: tuple[Settings, Celery],
) -> None:
    settings, celery = slots
    limits = Limits(settings.model_copy(update={"owner_max_running": 0}), jobs.catalogue)
    admit(limits, celery, a_job("alice", "test_licensed"))
    with pytest.raises(Held, match="type test_licensed has 1 running"):
        admit(limits, celery, a_job("bob", "test_licensed"))


def test_a_slot_whose_holder_stopped_renewing_expires_and_the_sweep_wakes_its_waiter(
    slots: tuple[Settings, Celery],
) -> None:
    settings, celery = slots
    limits = Limits(settings.model_copy(update={"lease_seconds": 3}), jobs.catalogue)
    admit(limits, celery, a_job("alice"))  # its worker dies: never renewed, never released
    with pytest.raises(Held):
        admit(limits, celery, a_job("alice"))
    assert limits.wake_all(celery) == 0
    wait_until(lambda: limits.wake_all(celery) == 1, 10, "the slot to expire and its waiter woken")
    assert queue.queue_depth(celery, "default") == 1
    assert redis.Redis.from_url(settings.redis_url).hgetall(REGISTRY) == {}  # nothing left


def test_a_renewed_slot_outlives_its_first_lease(slots: tuple[Settings, Celery]) -> None:
    settings, celery = slots
    limits = Limits(settings.model_copy(update={"lease_seconds": 2}), jobs.catalogue)
    gate = admit(limits, celery, a_job("alice"))
    for _ in range(4):  # 2.8 s in all, renewed every 0.7 (a third of the lease at least)
        time.sleep(0.7)
        gate.renew()
    with pytest.raises(Held):
        admit(limits, celery, a_job("alice"))


@pytest.mark.parametrize(
    "redelivery",
    ["the same attempt again", "a message the record no longer names"],
)
def test_a_redundant_delivery_is_dropped_without_taking_or_freeing_a_slot(
    slots: tuple[Settings, Celery], redelivery: str
) -> None:
    settings, celery = slots
    limits = Limits(settings.model_copy(update={"owner_max_running": 2}), jobs.catalogue)
    job = a_job("alice")
    admit(limits, celery, job)
    stale = job if redelivery == "the same attempt again" else {**job, "task_id": ids.new_id()}
    with pytest.raises(Redundant):
        Gate(limits, celery, job["task_id"] if stale is job else ids.new_id())(stale)
    keys = redis.Redis.from_url(settings.redis_url).zcard(f"{PREFIX}owner:alice")
    assert keys == 1


def test_a_job_under_no_limit_never_reaches_redis(mongo_url: str) -> None:
    nowhere = f"redis://127.0.0.1:{local.free_port()}/0"
    settings = Settings(redis_url=nowhere, mongo_url=mongo_url, job_modules="tests.jobtypes")
    limits = Limits(settings, jobs.catalogue)
    gate = Gate(limits, queue.make_celery(settings), "t")
    gate(a_job("alice"))  # would raise ConnectionError had it asked Redis
    gate.renew()
    gate.release()
    assert limits.of(a_job("alice")) == []


def test_a_stale_copy_dropped_as_redundant_passes_its_wake_on_to_the_next_waiter(
    slots: tuple[Settings, Celery],
) -> None:
    settings, celery = slots
    limits = Limits(settings, jobs.catalogue)
    holder = admit(limits, celery, a_job("alice"))
    stale = a_job("alice")  # parked, then republished under a new task id meanwhile
    with pytest.raises(Held):
        admit(limits, celery, stale)
    waiting = a_job("alice")
    with pytest.raises(Held):
        admit(limits, celery, waiting)
    holder.release()  # wakes the stale copy
    assert queue.queue_depth(celery, "default") == 1
    with pytest.raises(Redundant):
        Gate(limits, celery, stale["task_id"])({**stale, "task_id": ids.new_id()})
    assert queue.queue_depth(celery, "default") == 2  # and it woke the next in line
    admit(limits, celery, waiting)


def test_a_wake_lost_before_its_message_went_out_is_published_by_a_later_sweep(
    slots: tuple[Settings, Celery], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, celery = slots
    limits = Limits(settings, jobs.catalogue)
    holder = admit(limits, celery, a_job("alice"))
    with pytest.raises(Held):
        admit(limits, celery, a_job("alice"))
    # The worker dies between taking the job off the wait list and publishing it.
    assert len(limits.release_slots(holder.held, holder.holder)) == 1
    assert queue.queue_depth(celery, "default") == 0
    assert limits.wake_all(celery) == 0  # within the grace, its worker may still publish it
    monkeypatch.setattr("jobline.engine.limits.WAKE_GRACE_SECONDS", 0)
    assert limits.wake_all(celery) == 1
    assert queue.queue_depth(celery, "default") == 1
    assert redis.Redis.from_url(settings.redis_url).zcard(WAKING) == 0
    assert limits.wake_all(celery) == 0  # published once


# -- real workers ------------------------------------------------------------------------


class Fleet:
    """Two `jobline worker` processes with JOBLINE_OWNER_MAX_RUNNING=1, on their own databases."""

    def __init__(self, settings: Settings, tmp: Path, **overrides: Any) -> None:
        self.settings = Settings(
            **{
                **settings.model_dump(),
                "redis_url": settings.redis_url.rsplit("/", 1)[0] + "/5",
                "broker_url": None,
                "mongo_db": "jobline_limits",
                "owner_max_running": 1,
                **overrides,
            }
        )
        self.tmp = tmp
        self.store = JobStore(self.settings)
        self.store.ensure_indexes()
        self.pipeline = make_pipeline(self.settings, self.store)
        self.workers: list[local.Process] = []

    def worker(self, name: str, **overrides: Any) -> local.Process:
        log = self.tmp / f"{name}.log"
        settings = self.settings.model_copy(update=overrides)
        process = start_worker(settings, log, "--concurrency=2", f"--hostname={name}@%h")
        self.workers.append(process)
        return process

    def reset(self) -> None:
        for process in self.workers:
            process.stop()
        self.workers.clear()
        redis.Redis.from_url(self.settings.redis_url).flushdb()
        self.store.jobs.delete_many({})

    def running(self, owner: str) -> int:
        return self.store.jobs.count_documents({"owner": owner, "status": "running"})


@pytest.fixture(scope="module")
def module_fleet(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(settings, tmp_path_factory.mktemp("limits"))
    yield fleet
    fleet.reset()
    fleet.store.close()


@pytest.fixture
def fleet(module_fleet: Fleet) -> Fleet:
    """The module's databases, empty, with no worker yet."""
    module_fleet.reset()
    return module_fleet


class Watch:
    """The most jobs of each owner seen running at once, read from the store as they run."""

    def __init__(self, store: JobStore) -> None:
        self.most: Counter[str] = Counter()
        self._stop = threading.Event()
        self._store = store
        self._thread = threading.Thread(target=self._look, daemon=True)
        self._thread.start()

    def _look(self) -> None:
        while not self._stop.wait(0.1):
            running = Counter(
                job["owner"] for job in self._store.jobs.find({"status": "running"}, {"owner": 1})
            )
            for owner, count in running.items():
                self.most[owner] = max(self.most[owner], count)

    def stop(self) -> Counter[str]:
        self._stop.set()
        self._thread.join(5)
        return self.most


# Two hundred jobs one at a time, each woken off the wait list.
@pytest.mark.timeout(420)
def test_with_a_limit_of_one_another_owners_five_jobs_finish_while_a_burst_of_two_hundred_waits(
    fleet: Fleet,
) -> None:
    fleet.worker("one")
    fleet.worker("two")
    burst = [Submission("test_slow", {"seconds": 0.05}, owner="a") for _ in range(200)]
    a_ids = [job["_id"] for job in fleet.pipeline.submit_many(burst)]  # type: ignore[index]
    watch = Watch(fleet.store)
    b_ids = [
        fleet.pipeline.submit("test_slow", {"seconds": 0.05}, owner="b")["_id"] for _ in range(5)
    ]

    b_ended = wait_all_terminal(fleet.store, b_ids, 60)
    a_waiting = list(fleet.store.jobs.find({"owner": "a", "status": {"$nin": TERMINAL}}))
    assert [job["status"] for job in b_ended] == ["succeeded"] * 5
    assert len(a_waiting) > 150
    # The board and the API say why they wait.
    reasons = {job_view(job)["held_reason"] for job in a_waiting if job["status"] == "queued"}
    assert "owner a has 1 running (JOBLINE_OWNER_MAX_RUNNING); waits for one to end" in reasons

    a_ended = wait_all_terminal(fleet.store, a_ids, 360)
    # Never two of one owner at once. (b's five short jobs may all fall between
    # two looks, so only a, with two hundred, is sure to be seen.)
    most = watch.stop()
    assert most["a"] == 1 and max(most.values()) == 1
    # Held back, never lost, and never charged an attempt for waiting.
    assert [(job["status"], job["attempts"]) for job in a_ended] == [("succeeded", 1)] * 200
    assert [job_view(job)["held_reason"] for job in a_ended] == [None] * 200


@pytest.mark.timeout(120)
def test_a_worker_killed_while_holding_the_owners_slot_gives_it_back_within_a_lease(
    fleet: Fleet,
) -> None:
    doomed = fleet.worker("doomed")
    job_ids = [
        fleet.pipeline.submit("test_slow", {"seconds": 4}, owner="a")["_id"] for _ in range(3)
    ]
    wait_until(lambda: fleet.running("a") == 1, 30, "the first job to run")
    time.sleep(0.5)  # the other two reach the worker and are parked behind it
    doomed.kill_group(signal.SIGKILL)
    doomed.stop()
    fleet.worker("heir")
    ended = wait_all_terminal(fleet.store, job_ids, 60)
    assert [job["status"] for job in ended] == ["succeeded"] * 3
    assert sorted(job["attempts"] for job in ended) == [1, 1, 2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("drop", ["cancel", "delete"])
def test_a_job_cancelled_or_deleted_while_it_waited_passes_the_wake_it_gets_on_to_the_next(
    settings: Settings, tmp_path: Path, drop: str
) -> None:
    # No sweep within the test: only a passed-on wake can start the last job.
    fleet = Fleet(settings, tmp_path, sweep_interval_seconds=600)
    try:
        fleet.reset()
        fleet.worker("one")
        # Long enough to outlast parking the two behind it and dropping one of them.
        first = fleet.pipeline.submit("test_slow", {"seconds": 8}, owner="a")["_id"]
        wait_until(lambda: fleet.running("a") == 1, 30, "the first job to run")
        gone, last = (
            fleet.pipeline.submit("test_slow", {"seconds": 0.05}, owner="a")["_id"]
            for _ in range(2)
        )

        def parked() -> bool:
            return all(fleet.store.get(i).get("held_reason") for i in (gone, last))

        wait_until(parked, 30, "both to be parked behind the first")
        getattr(fleet.pipeline, drop)(gone)
        # The first job's end wakes the dropped one, whose delivery wakes the last.
        ended = wait_all_terminal(fleet.store, [first, last], 60)
        assert [job["status"] for job in ended] == ["succeeded", "succeeded"]
        if drop == "cancel":
            assert fleet.store.get(gone)["status"] == "cancelled"
        else:
            with pytest.raises(JobNotFound):
                fleet.store.get(gone)
    finally:
        fleet.reset()
        fleet.store.close()


@pytest.mark.timeout(120)
def test_jobs_parked_under_a_limit_since_turned_off_run_at_the_next_sweep(fleet: Fleet) -> None:
    limited = fleet.worker("limited")
    ids = [fleet.pipeline.submit("test_slow", {"seconds": 3}, owner="a")["_id"] for _ in range(4)]

    def parked() -> int:
        return sum(bool(fleet.store.get(i).get("held_reason")) for i in ids)

    wait_until(lambda: fleet.running("a") == 1 and parked() == 3, 30, "one running, three parked")
    limited.stop()  # the running one finishes, and its end wakes one of the three
    # Restarted without the limit, and one sweep (at its start) in the test: that
    # sweep lets both others go at once, not one a sweep as the old limit's size would.
    fleet.worker("unlimited", owner_max_running=0, sweep_interval_seconds=600)
    ended = wait_all_terminal(fleet.store, ids, 60)
    assert [job["status"] for job in ended] == ["succeeded"] * 4
