"""Idempotency-Key on POST /jobs and POST /calculations."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from jobline.core import ids
from jobline.store.jobs import JobStore
from tests.conftest import Api

JOBS = "/api/v1/jobs"
CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"order-{ids.new_id()}"}


def test_the_same_key_and_body_return_the_first_job(idle_api: Api, store: JobStore) -> None:
    key = _key()
    body = {"type": "bmi", "params": ADA, "priority": 7}
    first = idle_api.post(JOBS, json=body, headers=key)
    again = idle_api.post(JOBS, json=body, headers=key)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert store.jobs.count_documents({}) == 1


def test_the_same_key_with_another_body_is_a_409(idle_api: Api, store: JobStore) -> None:
    key = _key()
    assert idle_api.post(JOBS, json={"type": "noop"}, headers=key).status_code == 202
    for other in ({"type": "noop", "priority": 1}, {"type": "bmi", "params": ADA}):
        response = idle_api.post(JOBS, json=other, headers=key)
        assert response.status_code == 409
        assert response.headers["Content-Type"] == "application/problem+json"
    assert store.jobs.count_documents({}) == 1


def test_different_keys_make_different_jobs(idle_api: Api) -> None:
    a = idle_api.post(JOBS, json={"type": "noop"}, headers=_key()).json()
    b = idle_api.post(JOBS, json={"type": "noop"}, headers=_key()).json()
    assert a["id"] != b["id"]


def test_calculations_honour_the_key_too(idle_api: Api, store: JobStore) -> None:
    key = _key()
    first = idle_api.post(CALCS, json=ADA, headers=key)
    again = idle_api.post(CALCS, json=ADA, headers=key)
    other = idle_api.post(CALCS, json={**ADA, "weight": 56}, headers=key)
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 409)
    assert again.json()["pid"] == first.json()["pid"]
    # A calculation is the job {"type": "bmi", "params": body}: the same request.
    as_job = idle_api.post(JOBS, json={"type": "bmi", "params": ADA}, headers=key)
    assert as_job.status_code == 200
    assert as_job.json()["id"] == first.json()["id"]
    assert store.jobs.count_documents({}) == 1


def test_concurrent_identical_requests_make_one_job(idle_api: Api, store: JobStore) -> None:
    key = _key()
    body = {"type": "noop"}
    answers: list[requests.Response] = []
    start = threading.Barrier(8)

    def post() -> None:
        start.wait()
        answers.append(requests.post(idle_api.url(JOBS), json=body, headers=key, timeout=30))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in answers}) == 1
    assert store.jobs.count_documents({}) == 1


def test_an_invalid_request_does_not_use_up_the_key(idle_api: Api) -> None:
    key = _key()
    assert idle_api.post(JOBS, json={"type": "noop", "x": 1}, headers=key).status_code == 422
    assert idle_api.post(JOBS, json={"type": "noop"}, headers=key).status_code == 202


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\tkey", "ключ"])
def test_malformed_keys_are_refused(idle_api: Api, store: JobStore, key: Any) -> None:
    response = idle_api.post(
        JOBS, json={"type": "noop"}, headers={"Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert store.jobs.count_documents({}) == 0
