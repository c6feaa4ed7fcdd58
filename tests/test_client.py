"""The Python client against a live stack: real HTTP, a real worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import jobline
from jobline.clients.python import ApiError, Client, Unreachable, WaitTimeout
from jobline.local import servers as local
from tests.conftest import Api
from tests.support import wait_until

ADA = {"name": "Ada", "weight": 55, "height": 170}


@pytest.fixture
def client(live_api: Api) -> Iterator[Client]:
    with jobline.Client(live_api.base) as client:
        yield client


@pytest.fixture
def idle_client(idle_api: Api) -> Iterator[Client]:
    """A client of an API whose jobs nobody runs: they stay queued."""
    with Client(idle_api.base) as client:
        yield client


def test_a_submitted_job_is_waited_for_with_its_progress_and_result(client: Client) -> None:
    job = client.submit("sleep", {"seconds": 4, "steps": 8})
    assert job["status"] == "queued"
    seen: list[dict[str, Any]] = []
    done = client.wait(job["id"], timeout=30, on_progress=seen.append)
    assert done["status"] == "succeeded"
    assert done["result"]["slept"] >= 1
    assert done["finished_at"] is not None
    progress = [change["progress"] for change in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress)
    assert seen[-1]["status"] == "succeeded"


def test_waiting_for_a_failing_job_returns_it_failed(client: Client) -> None:
    job = client.submit("test_broken")
    done = client.wait(job["id"], timeout=30)
    assert done["status"] == "failed"
    assert done["error"]["message"] == "bad data"


def test_a_bmi_job_gets_its_result(client: Client) -> None:
    done = client.wait(client.submit("bmi", ADA)["id"], timeout=30)
    assert done["result"] == {"bmi": 19.03, "category": "normal"}
    assert client.get(done["id"]) == done


@pytest.mark.parametrize(
    ("type", "params", "loc"),
    [
        ("bmi", {**ADA, "weight": -1}, ["params", "weight"]),
        ("bmi", {"name": "Ada"}, ["params", "weight"]),
        ("no_such_type", {}, ["type"]),
    ],
)
def test_refused_submissions_raise_api_error_with_the_problem(
    idle_client: Client, type: str, params: dict[str, Any], loc: list[str]
) -> None:
    with pytest.raises(ApiError) as raised:
        idle_client.submit(type, params)
    assert raised.value.status == 422
    assert raised.value.problem["status"] == 422
    assert loc in [error["loc"] for error in raised.value.errors]


def test_an_unknown_job_is_a_404_api_error(idle_client: Client) -> None:
    for call in (idle_client.get, idle_client.cancel, idle_client.retry, idle_client.wait):
        with pytest.raises(ApiError) as raised:
            call("0193a5a8-0000-7000-8000-000000000000")
        assert raised.value.status == 404
        assert raised.value.problem["title"]


def test_jobs_are_listed_newest_first_and_filtered(idle_client: Client) -> None:
    first = idle_client.submit("bmi", ADA)
    second = idle_client.submit("noop")
    idle_client.cancel(second["id"])
    page = idle_client.list()
    assert [j["id"] for j in page["items"]] == [second["id"], first["id"]]
    assert [j["id"] for j in idle_client.list(status="cancelled")["items"]] == [second["id"]]
    assert [j["id"] for j in idle_client.list(type="bmi")["items"]] == [first["id"]]
    assert [j["id"] for j in idle_client.iter_jobs(status="queued")] == [first["id"]]


def test_a_queued_job_is_cancelled_and_retried(idle_client: Client) -> None:
    job = idle_client.submit("bmi", ADA)
    assert idle_client.cancel(job["id"])["status"] == "cancelled"
    assert idle_client.retry(job["id"])["status"] == "queued"
    with pytest.raises(ApiError) as raised:
        idle_client.retry(job["id"])
    assert raised.value.status == 409


def test_waiting_gives_up_after_the_timeout(idle_client: Client) -> None:
    job = idle_client.submit("bmi", ADA)
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        idle_client.wait(job["id"], timeout=1)
    assert time.monotonic() - started < 10


def test_waiting_gives_up_at_the_timeout_while_the_job_keeps_reporting_progress(
    client: Client,
) -> None:
    # Fifty steps in 20 s: a change every 0.4 s, each one a reason to keep reading.
    job = client.submit("sleep", {"seconds": 20, "steps": 50})
    seen: list[dict[str, Any]] = []
    try:
        # The clock starts once the job runs, whatever the worker was busy with before.
        wait_until(lambda: 0 < client.get(job["id"])["progress"] < 1, 30, "the job to report")
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            client.wait(job["id"], timeout=2, on_progress=seen.append)
        waited = time.monotonic() - started
        assert client.get(job["id"])["status"] == "running"  # it gave up before the job ended
        assert any(0 < change["progress"] < 1 for change in seen)  # changes were coming
        assert 2 <= waited < 6
    finally:
        client.cancel(job["id"])


def test_an_unreachable_api_raises_unreachable() -> None:
    with Client(f"http://127.0.0.1:{local.free_port()}") as client, pytest.raises(Unreachable):
        client.get("0193a5a8-0000-7000-8000-000000000000")


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    with Client("http://127.0.0.1:1", api_key="k-123") as client:
        assert client.http.headers["Authorization"] == "Bearer k-123"
    with Client("http://127.0.0.1:1") as client:
        assert "Authorization" not in client.http.headers
