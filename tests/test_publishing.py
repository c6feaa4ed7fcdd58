"""Publishing many jobs' messages at once: in order, and honest about what was sent."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from jobline import jobs
from jobline.core.errors import BrokerUnavailable, StoreUnavailable
from jobline.core.settings import Settings
from jobline.engine import queue
from jobline.engine.pipeline import INSERT_SLICE, Submission
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.records import Job, new_job
from tests.conftest import make_settings
from tests.support import make_pipeline

NOOP = jobs.load().get("noop")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own, so that its queues hold only what it sends."""
    server, url = local.start_redis(tmp_path / "redis", aof=False)
    yield url
    server.stop()


def queued_ids(url: str, queue_name: str) -> list[str]:
    """The job ids waiting in ``queue_name``, oldest first (the order workers take them)."""
    client = redis.Redis.from_url(url)
    ids = []
    for key in sorted(client.keys(f"{queue_name}*")):
        if client.type(key) == b"list":
            ids += [json.loads(raw)["headers"]["argsrepr"] for raw in client.lrange(key, 0, -1)]
    return [argsrepr.strip("[]'") for argsrepr in reversed(ids)]


def make(n: int, queue_name: str = "default") -> list[Job]:
    return [new_job("noop", {}, queue=queue_name) for _ in range(n)]


def test_many_messages_all_go_out_in_order(broker: str) -> None:
    app = queue.make_celery(Settings(redis_url=broker))
    batch = make(2 * queue.PUBLISH_CHUNK + 50)
    sent, refused = queue.publish_many(app, [(job, NOOP) for job in batch])
    assert (sent, refused) == (len(batch), None)
    assert queued_ids(broker, "default") == [job["_id"] for job in batch]
    assert queue.queue_depth(app, "default") == len(batch)


def test_messages_many_threads_publish_at_once_each_go_out_once(broker: str) -> None:
    # An API process's threads: the messages sent meanwhile share the next round trip.
    app = queue.make_celery(Settings(redis_url=broker))
    batch = make(40)
    together = threading.Barrier(len(batch))

    def publish(job: Job) -> None:
        together.wait()
        queue.publish(app, job, NOOP)

    with ThreadPoolExecutor(len(batch)) as pool:
        list(pool.map(publish, batch))  # every caller returns, none raises
    assert Counter(queued_ids(broker, "default")) == Counter(job["_id"] for job in batch)


def test_a_batch_that_meets_a_connection_redis_dropped_still_sends_each_message_once(
    broker: str,
) -> None:
    app = queue.make_celery(Settings(redis_url=broker))
    queue.publish(app, make(1, "warm")[0], NOOP)  # the pool now holds a connection
    killed = redis.Redis.from_url(broker).client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    batch = make(5)
    # As a lone message does, a batch reconnects.
    assert queue.publish_many(app, [(job, NOOP) for job in batch]) == (5, None)
    assert queued_ids(broker, "default") == [job["_id"] for job in batch]


def test_messages_published_at_once_to_a_broker_that_is_down_each_raise_an_error_of_their_own() -> (
    None
):
    down = f"redis://127.0.0.1:{local.free_port()}/0"
    app = queue.make_celery(Settings(redis_url=down, connect_timeout_seconds=0.5))
    batch = make(8)
    together = threading.Barrier(len(batch))

    def publish(job: Job) -> BaseException | None:
        together.wait()
        try:
            queue.publish(app, job, NOOP)
        except BrokerUnavailable as exc:
            return exc
        return None

    with ThreadPoolExecutor(len(batch)) as pool:
        errors = list(pool.map(publish, batch))
    assert [type(error) for error in errors] == [BrokerUnavailable] * len(batch)
    # Raised in eight threads, one instance would gather all their tracebacks.
    assert len({id(error) for error in errors}) == len(batch)


def only_the_default_queue(url: str) -> str:
    """A URL for a Redis user that may write the default queue (and Celery's bindings) only."""
    redis.Redis.from_url(url).acl_setuser(
        "pub", enabled=True, passwords=["+pw"], keys=["default*", "_kombu.*"], commands=["+@all"]
    )
    return url.replace("redis://", "redis://pub:pw@")


def test_a_chunk_the_broker_refuses_and_all_after_it_count_as_unsent(broker: str) -> None:
    limited = only_the_default_queue(broker)
    app = queue.make_celery(Settings(redis_url=limited))
    chunk = queue.PUBLISH_CHUNK
    batch = make(chunk + chunk // 2) + make(1, "other") + make(chunk)
    sent, refused = queue.publish_many(app, [(job, NOOP) for job in batch])
    assert sent == chunk
    assert isinstance(refused, BrokerUnavailable)
    # The whole first chunk is there; the refused chunk's "other" job is not.
    assert queued_ids(broker, "default")[:chunk] == [job["_id"] for job in batch[:chunk]]
    assert queued_ids(broker, "other") == []


def test_nothing_counts_as_sent_to_a_broker_that_is_down(broker: str) -> None:
    down = f"redis://127.0.0.1:{local.free_port()}/0"
    settings = Settings(redis_url=down, connect_timeout_seconds=0.5)
    sent, refused = queue.publish_many(queue.make_celery(settings), [(j, NOOP) for j in make(3)])
    assert sent == 0
    assert isinstance(refused, BrokerUnavailable)


def test_a_batch_refused_midway_keeps_what_went_out_and_takes_back_the_rest(
    broker: str, mongo_url: str
) -> None:
    settings = make_settings(only_the_default_queue(broker), mongo_url, mongo_db="jobline_publish")
    store = JobStore(settings)
    store.jobs.drop()
    store.ensure_indexes()
    try:
        chunk = queue.PUBLISH_CHUNK
        # test_ordered has a queue of its own, which this broker user may not write.
        kinds = ["noop"] * (chunk + 10) + ["test_ordered"] + ["noop"] * 20
        outcomes = make_pipeline(settings, store).submit_many([Submission(k, {}) for k in kinds])
        accepted = [o["_id"] for o in outcomes if isinstance(o, dict)]
        refused = [o for o in outcomes if isinstance(o, BrokerUnavailable)]
        assert len(accepted) == chunk and len(refused) == len(kinds) - chunk
        assert all(isinstance(o, dict) for o in outcomes[:chunk])
        # What was accepted is stored and on the queue; nothing refused is stored.
        assert sorted(job["_id"] for job in store.jobs.find({}, {"_id": 1})) == sorted(accepted)
        assert queued_ids(broker, "default")[:chunk] == accepted
    finally:
        store.jobs.drop()
        store.close()


@pytest.fixture
def store_of(mongo_url: str) -> Iterator[Callable[..., JobStore]]:
    """A job store on a collection of this test's own, dropped afterwards."""
    made: list[JobStore] = []

    def make_store(settings: Settings, kind: type[JobStore] = JobStore) -> JobStore:
        store = kind(settings)
        store.jobs.drop()
        store.ensure_indexes()
        made.append(store)
        return store

    yield make_store
    for store in made:
        store.jobs.drop()
        store.close()


def stored_ids(store: JobStore) -> list[str]:
    return sorted(job["_id"] for job in store.jobs.find({}, {"_id": 1}))


def test_a_refusal_in_a_later_slice_takes_back_the_slice_stored_ahead_of_it(
    broker: str, mongo_url: str, store_of: Callable[..., JobStore]
) -> None:
    settings = make_settings(only_the_default_queue(broker), mongo_url, mongo_db="jobline_publish")
    store = store_of(settings)
    size = INSERT_SLICE
    # The refused job sits in the second slice; the third is stored while the second
    # is published, and must be taken back with it.
    kinds = ["noop"] * (size + 10) + ["test_ordered"] + ["noop"] * (2 * size)
    outcomes = make_pipeline(settings, store).submit_many([Submission(k, {}) for k in kinds])
    accepted = [o["_id"] for o in outcomes if isinstance(o, dict)]
    assert len(outcomes) == len(kinds)
    # The first slice, and the second's whole publish chunks before the refused one.
    assert len(accepted) == size and all(isinstance(o, dict) for o in outcomes[:size])
    assert all(isinstance(o, BrokerUnavailable) for o in outcomes[size:])
    assert stored_ids(store) == sorted(accepted)
    assert queued_ids(broker, "default")[:size] == accepted


class FailsOnInsert(JobStore):
    """The real store, whose insert number ``fail_at`` finds MongoDB gone."""

    fail_at = 2

    def insert_many(self, jobs: Sequence[Job]) -> None:
        self.insert_calls = getattr(self, "insert_calls", 0) + 1
        if self.insert_calls == self.fail_at:
            raise StoreUnavailable("MongoDB went away")
        super().insert_many(jobs)


def test_the_store_failing_on_a_later_slice_keeps_the_slices_before_it(
    broker: str, mongo_url: str, store_of: Callable[..., JobStore]
) -> None:
    settings = make_settings(broker, mongo_url, mongo_db="jobline_publish")
    store = store_of(settings, FailsOnInsert)
    kinds = ["noop"] * (3 * INSERT_SLICE)
    outcomes = make_pipeline(settings, store).submit_many([Submission(k, {}) for k in kinds])
    accepted = [o["_id"] for o in outcomes if isinstance(o, dict)]
    assert len(accepted) == INSERT_SLICE and all(
        isinstance(o, dict) for o in outcomes[:INSERT_SLICE]
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes[INSERT_SLICE:])
    # Only the first slice was stored and published; the third was never attempted.
    assert store.insert_calls == 2
    assert stored_ids(store) == sorted(accepted)
    assert queued_ids(broker, "default") == accepted


def test_the_store_failing_on_the_first_slice_refuses_the_whole_batch(
    broker: str, mongo_url: str, store_of: Callable[..., JobStore]
) -> None:
    settings = make_settings(broker, mongo_url, mongo_db="jobline_publish")
    store = store_of(settings, FailsOnInsert)
    store.fail_at = 1
    with pytest.raises(StoreUnavailable):
        make_pipeline(settings, store).submit_many([Submission("noop", {})] * 5)
    assert stored_ids(store) == [] and queued_ids(broker, "default") == []
