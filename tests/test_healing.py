"""Workers that heal each other: with only `jobline api` and `jobline worker`, and no
`jobline sweep`, a worker's crash is repaired and delayed jobs run on time.

The module has servers of its own, and no sweeper but the workers' own.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from jobline.engine.healing import LEASE_KEY, SweeperLease
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.records import now
from tests.conftest import Api, Gunicorn, make_settings, start_worker
from tests.support import starts, successes_logged, wait_all_terminal, wait_job, wait_until

pytestmark = pytest.mark.fault

JOBS = "/api/v1/jobs"


class Cluster:
    """Redis, MongoDB, `jobline api` and the workers a test starts: no sweeper process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers = [local.start_redis(tmp / "redis"), local.start_mongo(tmp / "mongo")]
        (_, redis_url), (_, mongo_url) = self.servers
        self.settings = make_settings(
            redis_url, mongo_url, mongo_db="jobline_healing", lease_seconds=4
        )
        self.redis = redis.Redis.from_url(redis_url)
        self.store = JobStore(self.settings)
        self.store.ensure_indexes()
        self.gunicorn = Gunicorn(self.settings, tmp / "api.log")
        self.api = Api(self.gunicorn.base)
        self.workers: dict[str, local.Process] = {}

    def worker(self, name: str, **overrides: Any) -> local.Process:
        log = self.tmp / f"{name}.log"
        settings = self.settings.model_copy(update=overrides)
        process = start_worker(settings, log, "--concurrency=2", f"--hostname={name}@%h")
        self.workers[name] = process
        return process

    def sweeping(self) -> str | None:
        """The name of the worker holding the sweeper lease, if any."""
        token = self.redis.get(LEASE_KEY)
        return token.decode().split("@", 1)[0] if token else None

    def logs(self) -> str:
        return "".join(p.log.read_text() for p in self.workers.values() if p.log)

    def reset(self) -> None:
        for process in self.workers.values():
            process.stop()
        self.workers.clear()
        self.redis.flushdb()
        self.store.jobs.delete_many({})

    def close(self) -> None:
        self.reset()
        self.gunicorn.process.stop()
        self.store.close()
        for process, _ in reversed(self.servers):
            process.stop()


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("healing"))
    yield cluster
    cluster.close()


@pytest.fixture
def cluster(module_cluster: Cluster) -> Cluster:
    """The module's servers and API, empty, with no worker yet."""
    module_cluster.reset()
    return module_cluster


def submit(api: Api, body: dict[str, object]) -> str:
    response = api.post(JOBS, json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_job_has_every_job_succeed_once_and_the_lease_move_to_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker("left")
    cluster.worker("right")
    interval = cluster.settings.sweep_interval_seconds
    holder = wait_until(cluster.sweeping, 10, "a worker to take the sweeper lease")
    survivor = "right" if holder == "left" else "left"
    path = tmp_path / "journal"
    # Four slots, four jobs: each worker runs two, so the one killed cuts two short.
    ids = [
        submit(cluster.api, {"type": "test_slow", "params": {"seconds": 3, "journal": str(path)}})
        for _ in range(4)
    ]
    wait_until(
        lambda: (
            cluster.store.jobs.count_documents({"status": "running", "progress": {"$gt": 0}}) == 4
        ),
        30,
        "all four jobs to be under way",
    )
    cluster.workers[holder].kill_group(signal.SIGKILL)
    killed_at = now()
    cluster.workers[holder].stop()

    wait_until(lambda: cluster.sweeping() == survivor, 10, "the lease to move")
    ended = wait_all_terminal(cluster.store, ids, 60)
    assert [job["status"] for job in ended] == ["succeeded"] * 4
    cut_short = [job for job in ended if job["attempts"] == 2]
    assert len(cut_short) == 2
    assert sorted(job["attempts"] for job in ended) == [1, 1, 2, 2]
    # Handed on within a lease plus two sweeps of the kill (and slack for a busy
    # machine), well before a waiting job would be republished as lost.
    handed_on = timedelta(seconds=cluster.settings.lease_seconds + 2 * interval + 3)
    assert all(job["started_at"] - killed_at <= handed_on for job in cut_short)
    assert starts(path) == {job["_id"]: job["attempts"] for job in ended}
    logs = cluster.logs()
    for job in ended:  # a killed worker may die before logging a success it recorded
        assert successes_logged(logs, job["_id"]) <= 1


@pytest.mark.timeout(60)
def test_a_delayed_job_is_released_by_the_workers_and_runs_on_time(cluster: Cluster) -> None:
    cluster.worker("alone")
    # Further ahead than two sweeps: kept only in MongoDB until a sweeper releases it.
    job_id = submit(
        cluster.api, {"type": "test_slow", "params": {"seconds": 0.1}, "delay_seconds": 5}
    )
    assert cluster.store.get(job_id)["held"] is True
    job = wait_job(cluster.store, job_id, timeout=30)
    assert job["status"] == "succeeded"
    late = (job["started_at"] - job["run_at"]).total_seconds()
    assert 0 <= late < 2 * cluster.settings.sweep_interval_seconds + 3


@pytest.mark.timeout(60)
def test_a_worker_stopped_cleanly_hands_the_lease_over_at_once(cluster: Cluster) -> None:
    # A lease of 10 s: only a release, not a lapse, hands it over within 5.
    slow = {"sweep_interval_seconds": 15}
    cluster.worker("first", **slow)
    wait_until(lambda: cluster.sweeping() == "first", 10, "the first worker to sweep")
    cluster.worker("second", **slow)
    assert cluster.sweeping() == "first"
    cluster.workers["first"].stop()  # SIGTERM: the lease is released, not left to lapse
    wait_until(lambda: cluster.sweeping() == "second", 5, "the second worker to sweep")


def test_the_sweeper_lease_has_one_holder_until_it_lapses_or_is_released(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(LEASE_KEY)
    first, second = SweeperLease(client, ttl=2.0), SweeperLease(client, ttl=2.0)
    assert first.hold() and not second.hold()
    assert first.hold() and not second.hold()  # renewed by its holder only
    wait_until(second.hold, 5, "the lease to lapse and be taken")
    assert not first.hold()  # a lapsed holder does not take it back
    second.release()
    assert first.hold()
    first.release()
    assert client.get(LEASE_KEY) is None
