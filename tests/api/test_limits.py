"""Rate limits (429) and queue-depth backpressure (503), both with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
import requests

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp, idle_settings

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}


def _served(settings: Settings) -> Iterator[ServedApp]:
    served = ServedApp(create_app(settings))
    yield served
    served.close()


@pytest.fixture(scope="module")
def limited(settings: Settings, store: JobStore) -> Iterator[ServedApp]:
    """Keys required, five requests a minute each."""
    yield from _served(idle_settings(settings, auth=True, rate_limit="5/minute"))


@pytest.fixture(scope="module")
def limited_by_address(settings: Settings, store: JobStore) -> Iterator[ServedApp]:
    """No keys, three requests a minute per client address."""
    yield from _served(idle_settings(settings, rate_limit="3 per minute"))


def _assert_429(response: requests.Response) -> None:
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 62  # within the minute's window
    assert response.json()["status"] == 429


def test_a_key_past_its_rate_limit_gets_429_while_others_go_on(
    limited: ServedApp, api_keys: dict[str, str]
) -> None:
    alice, bob = Api(limited.base, api_keys["alice"]), Api(limited.base, api_keys["bob"])
    assert [alice.get(CALCS).status_code for _ in range(5)] == [200] * 5
    _assert_429(alice.get(CALCS))
    _assert_429(alice.post(CALCS, json=ADA))
    assert bob.get(CALCS).status_code == 200
    assert alice.get("/healthz").status_code == 200  # probes are never limited
    assert alice.get("/metrics").status_code == 200


def test_without_keys_the_limit_is_per_client_address(
    limited_by_address: ServedApp, store: JobStore
) -> None:
    api = Api(limited_by_address.base)
    assert [api.get(CALCS).status_code for _ in range(3)] == [200] * 3
    before = store.jobs.count_documents({})
    _assert_429(api.post(CALCS, json=ADA))
    assert store.jobs.count_documents({}) == before


@pytest.fixture
def shallow(settings: Settings, store: JobStore) -> Iterator[Api]:
    """The API on an empty broker database no worker reads, refusing queues deeper than 2."""
    backlog_db = settings.redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(backlog_db).flushdb()
    store.jobs.delete_many({})
    full = Settings(
        **{
            **settings.model_dump(),
            "redis_url": backlog_db,
            "broker_url": None,
            "max_queue_depth": 2,
        }
    )
    for served in _served(full):
        yield Api(served.base)


def test_submissions_to_a_queue_past_its_depth_get_503_with_retry_after(
    shallow: Api, store: JobStore
) -> None:
    accepted = 0
    deadline = time.monotonic() + 30
    while (response := shallow.post(CALCS, json=ADA)).status_code == 202:
        accepted += 1
        assert time.monotonic() < deadline, "the queue never filled up"
        time.sleep(0.2)  # the depth is cached for about a second
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert "queue 'default'" in response.json()["detail"]
    assert accepted >= 3
    assert store.jobs.count_documents({}) == accepted
    assert shallow.get(CALCS).status_code == 200  # reading is never refused


def test_a_batch_for_a_full_queue_refuses_each_job_with_503_and_keeps_none(
    shallow: Api, store: JobStore
) -> None:
    jobs = {"jobs": [{"type": "bmi", "params": ADA}] * 3}
    first = shallow.post("/api/v1/jobs:batch", json=jobs).json()
    assert first["accepted"] == 3
    deadline = time.monotonic() + 30
    while shallow.post(CALCS, json=ADA).status_code != 503:  # the depth is cached ~1 s
        assert time.monotonic() < deadline, "the queue never counted as full"
        time.sleep(0.2)
    stored = store.jobs.count_documents({})
    refused = shallow.post("/api/v1/jobs:batch", json=jobs)
    assert refused.status_code == 200
    body = refused.json()
    assert body["accepted"] == 0
    assert {r["status"] for r in body["results"]} == {503}
    assert store.jobs.count_documents({}) == stored
