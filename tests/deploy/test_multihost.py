"""Three worker hosts (network namespaces, own addresses and names), one killed mid-run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobline import jobs
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import make_settings
from tests.deploy.conftest import JOB_MODULES, sweeper
from tests.deploy.hosts import (
    Lan,
    NamespacesUnavailable,
    start_remote_worker,
    start_servers,
    wait_answering,
)

HOSTS = 3
JOBS = 300
NAP = 0.1  # seconds each job sleeps


@pytest.fixture
def lan() -> Iterator[Lan]:
    """Three namespaces behind a bridge, removed afterwards whatever happens."""
    lan = Lan(HOSTS)
    try:
        lan.create()
    except NamespacesUnavailable as exc:
        pytest.skip(f"cannot make network namespaces here: {exc}")
    try:
        yield lan
    finally:
        lan.remove()


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.01)


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_jobs_spread_over_three_hosts_all_succeed_once_when_one_host_dies(
    lan: Lan, tmp_path: Path
) -> None:
    servers, redis_url, mongo_url = start_servers(lan.gateway, tmp_path)
    processes: list[local.Process] = []
    try:
        settings = make_settings(
            redis_url,
            mongo_url,
            mongo_db="jobline_hosts",
            lease_seconds=3,
            requeue_after_seconds=5,
            sweep_interval_seconds=0.5,
            job_modules=JOB_MODULES,
        )
        store = JobStore(settings)
        store.ensure_indexes()
        workers = [
            start_remote_worker(lan, i, settings, tmp_path / f"{lan.hostname(i)}.log", "-c", "2")
            for i in range(HOSTS)
        ]
        processes += workers
        processes.append(sweeper(settings, tmp_path / "sweep.log"))
        wait_answering(settings, workers, timeout=90)
        _run(lan, settings, store, workers, tmp_path / "ledger")
    finally:
        for process in [*reversed(processes), *servers]:
            process.stop()


def _run(
    lan: Lan, settings: Settings, store: JobStore, workers: list[local.Process], ledger: Path
) -> None:
    pipeline = Pipeline(settings, store, make_celery(settings), jobs.load(JOB_MODULES.split(",")))
    params = {"seconds": NAP, "ledger": str(ledger)}
    ids = [pipeline.submit("deploy_nap", params)["_id"] for _ in range(JOBS)]
    hosts = [lan.hostname(i) for i in range(HOSTS)]
    doomed = hosts[-1]

    def finished_by() -> Counter[str]:
        return Counter(j["worker"] for j in store.jobs.find({"status": "succeeded"}, {"worker": 1}))

    wait_until(lambda: all(finished_by()[h] >= 5 for h in hosts), 60, "every host to run jobs")

    # Kill the doomed host's worker just after it starts a job, so it dies holding one.
    def doomed_just_started() -> bool:
        recent = datetime.now(UTC) - timedelta(seconds=NAP / 3)
        return (
            store.jobs.find_one(
                {"status": "running", "worker": doomed, "started_at": {"$gt": recent}}
            )
            is not None
        )

    wait_until(doomed_just_started, 30, f"{doomed} to start a job")
    workers[-1].kill_group()  # SIGKILL the worker and its pool: the host is gone
    assert workers[-1].popen is not None
    workers[-1].popen.wait(10)
    # A result the host sent just before it died may still be on its way to the
    # store; what is running once that has landed is what the host left behind.
    time.sleep(0.5)
    orphans = [j["_id"] for j in store.jobs.find({"status": "running", "worker": doomed})]
    assert orphans, "the killed host held no job; the test proved nothing"

    wait_until(lambda: store.jobs.count_documents({"status": "succeeded"}) == JOBS, 90, "all jobs")
    done = {j["_id"]: j for j in store.jobs.find({})}
    assert sorted(done) == sorted(ids)
    assert {j["status"] for j in done.values()} == {"succeeded"}
    assert set(finished_by()) == set(hosts)
    for job_id in orphans:  # handed on to a live host as a new attempt
        assert done[job_id]["worker"] != doomed
        assert done[job_id]["attempts"] >= 2
    runs = Counter(tuple(line.split()) for line in ledger.read_text().splitlines())
    for job in done.values():
        # The record is consistent: its result came from its last attempt, on its host.
        assert job["result"] == {"host": job["worker"], "attempt": job["attempts"]}
        assert runs[(job["_id"], str(job["attempts"]), job["worker"])] == 1
    assert max(runs.values()) == 1  # no attempt finished twice
