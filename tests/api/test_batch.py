"""POST /jobs:batch: many jobs in one request, each accepted or refused on its own."""

from __future__ import annotations

from typing import Any

import pytest

from jobline.store.jobs import JobStore
from tests.conftest import Api

BATCH = "/api/v1/jobs:batch"
ADA = {"name": "Ada", "weight": 55, "height": 170}


def test_a_mixed_batch_accepts_the_valid_jobs_and_names_each_refusal_in_order(
    idle_api: Api, store: JobStore
) -> None:
    items: list[Any] = [
        {"type": "noop"},
        {"type": "bmi", "params": {**ADA, "weight": -1}},
        {"type": "nope"},
        {"type": "sleep", "params": {"seconds": 2}, "priority": 8},
        "not an object",
        {"type": "bmi", "params": ADA, "delay_seconds": 60},
        {"type": "noop", "priority": 12},
    ]
    response = idle_api.post(BATCH, json={"jobs": items})
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["refused"]) == (3, 4)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [202, 422, 422, 202, 422, 202, 422]
    assert [e["loc"] for e in results[1]["errors"]] == [["params", "weight"]]
    assert [e["loc"] for e in results[2]["errors"]] == [["type"]]
    assert [e["loc"] for e in results[4]["errors"]] == [[]]
    assert [e["loc"] for e in results[6]["errors"]] == [["priority"]]
    accepted = [r for r in results if r["status"] == 202]
    jobs = [idle_api.get(r["location"]).json() for r in accepted]
    assert [j["id"] for j in jobs] == [r["id"] for r in accepted]
    assert [j["type"] for j in jobs] == ["noop", "sleep", "bmi"]
    assert [j["status"] for j in jobs] == ["queued", "queued", "scheduled"]
    assert jobs[1]["priority"] == 8
    assert store.jobs.count_documents({}) == 3


def test_a_batch_of_a_thousand_is_accepted_and_the_jobs_run(live_api: Api) -> None:
    response = live_api.post(BATCH, json={"jobs": [{"type": "noop"}] * 1000}, timeout=60)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len({r["id"] for r in results}) == 1000
    last = results[-1]["location"]
    live_api.wait_for(last, lambda j: j["status"] == "succeeded", timeout=90)
    first = live_api.get(results[0]["location"]).json()
    assert first["status"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"jobs": []}, ["jobs"]),
        ({"jobs": [{"type": "noop"}] * 1001}, ["jobs"]),
        ({"jobs": {"type": "noop"}}, ["jobs"]),
        ({}, ["jobs"]),
        ({"jobs": [{"type": "noop"}], "extra": 1}, ["extra"]),
        ([{"type": "noop"}], []),
    ],
)
def test_a_batch_that_is_not_a_list_of_1_to_1000_jobs_is_refused_whole(
    idle_api: Api, store: JobStore, body: Any, loc: list[str]
) -> None:
    response = idle_api.post(BATCH, json=body)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    assert store.jobs.count_documents({}) == 0


def test_a_batch_refuses_an_idempotency_key(idle_api: Api, store: JobStore) -> None:
    response = idle_api.post(
        BATCH, json={"jobs": [{"type": "noop"}]}, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 400
    assert store.jobs.count_documents({}) == 0


def test_a_batch_the_broker_refuses_is_503_per_job_and_keeps_nothing(
    brokerless_api: Api, store: JobStore
) -> None:
    before = store.jobs.count_documents({})
    jobs = [{"type": "noop"}, {"type": "nope"}, {"type": "noop"}]
    response = brokerless_api.post(BATCH, json={"jobs": jobs})
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["refused"]) == (0, 3)
    assert [r["status"] for r in body["results"]] == [503, 422, 503]
    assert "broker" in body["results"][0]["detail"]
    assert store.jobs.count_documents({}) == before
