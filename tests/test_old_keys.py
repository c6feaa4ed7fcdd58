"""Upgrading: a worker adopts the Redis keys older jobline versions named (":", ten lists)."""

from __future__ import annotations

from pathlib import Path

import redis

from jobline.core.settings import Settings
from jobline.engine import old_keys, queue
from tests.conftest import Api, idle_settings, start_worker

SEP = "\x06\x16"  # Celery's default separator in the Redis transport's key names


def test_a_worker_runs_jobs_queued_under_the_old_key_names_in_priority_order(
    settings: Settings, idle_api: Api, tmp_path: Path
) -> None:
    idle = idle_settings(settings)
    client = redis.Redis.from_url(idle.broker)
    locations: list[str] = []

    def submit(priorities: list[int], old_name: str | None) -> None:
        """Queue jobs, and move their list to a name an older version gave it."""
        first = len(locations)
        items = [
            {"type": "test_ordered", "params": {"label": str(first + i)}, "priority": p}
            for i, p in enumerate(priorities)
        ]
        response = idle_api.post("/api/v1/jobs:batch", json={"jobs": items})
        assert response.status_code == 200
        locations.extend(r["location"] for r in response.json()["results"])
        if old_name is not None:
            step = queue.redis_step(priorities[0])
            client.rename(f"test_priority{SEP}{step}", f"test_priority{old_name}")

    submit([5, 5], ":5")  # the ":" separator
    submit([9], ":9")
    submit([4], f"{SEP}4")  # a list for each of ten priorities
    submit([0], None)  # the queue's own name, in every naming
    # A binding of a stopped process with its fields joined by ":".
    client.sadd("_kombu.binding.reply.celery.pidbox", "gone::gone.reply.celery.pidbox")
    assert queue.queue_depth(queue.make_celery(idle), "test_priority") == 1

    # The worker answers the ping start_worker sends only once the old binding is gone.
    worker = start_worker(
        idle,
        tmp_path / "worker.log",
        "--queues=test_priority",
        "--concurrency=1",
        "--hostname=upgraded@%h",
        name="upgraded-worker",
    )
    try:
        done = [idle_api.wait_terminal(location, timeout=60) for location in locations]
    finally:
        worker.stop()
    assert {j["status"] for j in done} == {"succeeded"}
    ran = sorted(done, key=lambda j: j["started_at"])
    assert [(j["priority"], j["params"]["label"]) for j in ran] == [
        (0, "4"),
        (4, "3"),
        (5, "0"),
        (5, "1"),
        (9, "2"),
    ]
    assert not client.exists("test_priority:5", "test_priority:9", f"test_priority{SEP}4")


def test_adopting_keeps_new_keys_and_moves_nothing_when_there_is_nothing_old(
    settings: Settings,
) -> None:
    app = queue.make_celery(idle_settings(settings))
    client = redis.Redis.from_url(app.conf.broker_url)
    member = f"fresh{SEP}{SEP}fresh"
    client.sadd("_kombu.binding.fresh", member)
    assert old_keys.adopt(app, ["fresh"]) == 0
    assert client.smembers("_kombu.binding.fresh") == {member.encode()}
    client.delete("_kombu.binding.fresh")


def test_adopting_on_a_broker_that_is_down_gives_up_without_raising(settings: Settings) -> None:
    down = Settings(**{**settings.model_dump(), "broker_url": "redis://127.0.0.1:1/0"})
    assert old_keys.adopt(queue.make_celery(down), ["default"]) == 0
