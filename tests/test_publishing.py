"""Publishing many jobs' messages at once: in order, and honest about what was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobline import jobs
from jobline.core.errors import BrokerUnavailable
from jobline.core.settings import Settings
from jobline.engine import queue
from jobline.engine.pipeline import Submission
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
