"""Retries, time limits, cancellation and retrying by hand, against a real worker.

The job types used here live in tests/jobtypes.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.records import Job, new_job
from tests.conftest import Api
from tests.support import (
    make_pipeline,
    ticks,
    wait_all_terminal,
    wait_job,
    wait_stopped_ticking,
    wait_until,
)

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}


@pytest.fixture(scope="module")
def pipeline(settings: Settings, store: JobStore, worker: local.Process) -> Iterator[Pipeline]:
    """Submits any job type straight to the pipeline, with the shared worker running them."""
    yield make_pipeline(settings, store)


def run(pipeline: Pipeline, store: JobStore, type: str, params: Any, timeout: float = 30) -> Job:
    return wait_job(store, pipeline.submit(type, params)["_id"], timeout=timeout)


# -- retries -------------------------------------------------------------------


def test_a_job_that_fails_twice_then_succeeds_ends_succeeded_after_three_attempts(
    pipeline: Pipeline, store: JobStore
) -> None:
    job = run(pipeline, store, "test_flaky", {"failures": 2})
    assert job["status"] == "succeeded"
    assert job["attempts"] == 3
    assert job["result"] == {"attempt": 3}
    assert job["error"] is None


def test_an_always_failing_job_shows_retrying_then_fails_after_max_retries_keeping_the_error(
    pipeline: Pipeline, store: JobStore
) -> None:
    job_id = pipeline.submit("test_fails_slowly", {})["_id"]
    seen: list[tuple[str, int, str | None]] = []

    def ended() -> bool:
        job = store.get(job_id)
        snapshot = (job["status"], job["attempts"], (job["error"] or {}).get("message"))
        if not seen or seen[-1] != snapshot:
            seen.append(snapshot)
        return job["status"] in ("succeeded", "failed", "cancelled")

    wait_until(ended, 30, "the failing job to end", every=0.02)
    assert ("retrying", 1, "attempt 1 failed on purpose") in seen
    assert ("retrying", 2, "attempt 2 failed on purpose") in seen
    job = store.get(job_id)
    assert job["status"] == "failed"
    assert job["attempts"] == 3  # the first try and max_retries=2 retries
    assert job["error"]["reason"] == "error"
    assert job["error"]["type"] == "TransientError"
    assert job["error"]["message"] == "attempt 3 failed on purpose"
    assert "fails_slowly" in job["error"]["traceback"]
    assert "TransientError: attempt 3 failed on purpose" in job["error"]["traceback"]
    assert job["finished_at"] is not None


def test_a_permanent_error_fails_at_once_without_retrying(
    pipeline: Pipeline, store: JobStore
) -> None:
    job = run(pipeline, store, "test_broken", {})
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["error"]["type"] == "ValueError"
    assert job["error"]["message"] == "bad data"


# -- time limits ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_job_past_its_hard_time_limit_fails_with_reason_timeout_and_the_worker_goes_on(
    pipeline: Pipeline, store: JobStore, worker: local.Process
) -> None:
    hung = run(pipeline, store, "test_hang", {"seconds": 60})
    assert hung["status"] == "failed"
    assert hung["error"]["reason"] == "timeout"
    assert hung["error"]["type"] == "TimeLimitExceeded"
    assert hung["attempts"] == 1
    # Both of the worker's processes take the next jobs, the replaced one included.
    after = [pipeline.submit("test_slow", {"seconds": 0.2})["_id"] for _ in range(4)]
    assert [j["status"] for j in wait_all_terminal(store, after, 30)] == ["succeeded"] * 4
    assert worker.alive()
    again = store.get(hung["_id"])
    assert (again["status"], again["attempts"], again["error"]) == (
        "failed",
        1,
        hung["error"],
    )


# -- cancellation ----------------------------------------------------------------


def _cancel_via_pipeline(pipeline: Pipeline, store: JobStore, job_id: str) -> None:
    pipeline.cancel(job_id)


def _cancel_in_the_store_only(pipeline: Pipeline, store: JobStore, job_id: str) -> None:
    store.cancel(job_id)  # as if the revoke broadcast were lost: the heartbeat must notice


@pytest.mark.parametrize(
    "cancel",
    [
        pytest.param(_cancel_via_pipeline, id="revoked"),
        pytest.param(_cancel_in_the_store_only, id="noticed-by-the-heartbeat"),
    ],
)
def test_cancelling_a_running_job_that_never_reports_progress_stops_it_within_seconds(
    pipeline: Pipeline,
    store: JobStore,
    worker: local.Process,
    tmp_path: Path,
    cancel: Callable[[Pipeline, JobStore, str], None],
) -> None:
    path = tmp_path / "journal"
    job_id = pipeline.submit("test_deaf", {"seconds": 60, "journal": str(path)})["_id"]
    wait_until(lambda: ticks(path, job_id) >= 2, 30, "the job to run")
    cancelled_at = time.monotonic()
    cancel(pipeline, store, job_id)
    assert wait_stopped_ticking(path, job_id, timeout=15) - cancelled_at < 10
    job = store.get(job_id)
    assert (job["status"], job["attempts"]) == ("cancelled", 1)
    # The worker goes on: its next jobs run on both processes.
    after = [pipeline.submit("test_slow", {"seconds": 0.2})["_id"] for _ in range(4)]
    assert [j["status"] for j in wait_all_terminal(store, after, 30)] == ["succeeded"] * 4
    assert worker.alive()
    assert store.get(job_id)["status"] == "cancelled"


# -- retrying by hand --------------------------------------------------------------


def _cancelled(idle_api: Api, store: JobStore) -> str:
    job_id = idle_api.post(CALCS, json=ADA).json()["id"]
    assert idle_api.post(f"{CALCS}/{job_id}/cancel").json()["status"] == "cancelled"
    return str(job_id)


def _failed(idle_api: Api, store: JobStore) -> str:
    job = store.insert(new_job("bmi", ADA))
    claimed = store.claim(job["_id"])
    assert claimed is not None
    assert store.fail(job["_id"], claimed["attempts"], {"reason": "error", "message": "boom"})
    return str(job["_id"])


@pytest.mark.parametrize(("make", "attempts_before"), [(_cancelled, 0), (_failed, 1)])
def test_retrying_a_failed_or_cancelled_calculation_runs_it_again_as_a_new_attempt(
    idle_api: Api,
    live_api: Api,
    store: JobStore,
    make: Callable[[Api, JobStore], str],
    attempts_before: int,
) -> None:
    job_id = make(idle_api, store)
    response = live_api.post(f"{CALCS}/{job_id}/retry")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    assert response.json()["error"] is None
    job = live_api.wait_terminal(f"{CALCS}/{job_id}")
    assert job["status"] == "succeeded"
    assert job["result"] == {"bmi": 19.03, "category": "normal"}
    assert job["attempts"] == attempts_before + 1


def _queued(idle_api: Api, store: JobStore) -> str:
    return str(idle_api.post(CALCS, json=ADA).json()["id"])


def _running(idle_api: Api, store: JobStore) -> str:
    job_id = _queued(idle_api, store)
    assert store.claim(job_id) is not None
    return job_id


def _succeeded(idle_api: Api, store: JobStore) -> str:
    job_id = _running(idle_api, store)
    assert store.succeed(job_id, 1, {"bmi": 19.03, "category": "normal"})
    return job_id


@pytest.mark.parametrize("make", [_queued, _running, _succeeded])
def test_retrying_a_calculation_that_is_not_failed_or_cancelled_is_a_409_problem(
    idle_api: Api, store: JobStore, make: Callable[[Api, JobStore], str]
) -> None:
    job_id = make(idle_api, store)
    before = store.get(job_id)
    response = idle_api.post(f"{CALCS}/{job_id}/retry")
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    assert store.get(job_id) == before


# -- a burst -------------------------------------------------------------------------


# Bound by the machine's throughput, which the suite shares with another process.
@pytest.mark.timeout(300)
def test_a_burst_of_two_thousand_submissions_all_end_once_with_nothing_lost_or_doubled(
    live_api: Api, store: JobStore
) -> None:
    count = 2000

    def submit(i: int) -> str:
        body = {"name": f"p{i}", "weight": 40 + i % 60, "height": 170}
        response = requests.post(live_api.url(CALCS), json=body, timeout=30)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(submit, range(count)))
    assert len(set(accepted)) == count
    ended = wait_all_terminal(store, accepted, timeout=200)
    assert store.jobs.count_documents({}) == count
    assert [j["status"] for j in ended] == ["succeeded"] * count
    assert {j["attempts"] for j in ended} == {1}
    names = sorted(j["params"]["name"] for j in ended)
    assert names == sorted(f"p{i}" for i in range(count))
