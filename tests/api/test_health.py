"""Liveness and readiness, with the backing servers up and down."""

from __future__ import annotations

import requests

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp, make_settings
from tests.support import wait_until


def test_healthz_answers_while_the_process_is_up(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_mongodb_the_broker_and_a_worker_answer(live_api: Api) -> None:
    # A busy machine may make the worker miss one 1 s ping: ready within a few tries.
    def ready() -> requests.Response | None:
        response = live_api.get("/readyz")
        return response if response.status_code == 200 else None

    response = wait_until(ready, 15, "readyz to answer 200", every=0.5)
    assert response.json()["checks"] == {"mongodb": "ok", "broker": "ok", "workers": "ok"}


def test_readyz_fails_clearly_when_no_worker_answers(idle_api: Api) -> None:
    response = idle_api.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["mongodb"] == "ok" and checks["broker"] == "ok"
    assert checks["workers"] == "no worker answered a ping"
    assert response.headers["Retry-After"]


def _readyz_with(settings: Settings) -> tuple[int, dict[str, str], str | None]:
    served = ServedApp(create_app(settings))
    try:
        response = Api(served.base).get("/readyz")
        return response.status_code, response.json()["checks"], response.headers.get("Retry-After")
    finally:
        served.close()


def test_readyz_fails_clearly_when_redis_is_down(redis_url: str, mongo_url: str) -> None:
    dead = f"redis://127.0.0.1:{local.free_port()}/0"
    status, checks, retry_after = _readyz_with(make_settings(dead, mongo_url))
    assert status == 503
    assert checks["mongodb"] == "ok"
    assert "broker unreachable" in checks["broker"]
    assert retry_after is not None


def test_readyz_fails_clearly_when_mongodb_is_down(redis_url: str, mongo_url: str) -> None:
    dead = f"mongodb://127.0.0.1:{local.free_port()}"
    status, checks, _ = _readyz_with(make_settings(redis_url, dead))
    assert status == 503
    assert checks["broker"] == "ok"
    assert "MongoDB unreachable" in checks["mongodb"]


def test_submitting_while_mongodb_is_down_answers_503_with_retry_after(
    redis_url: str, mongo_url: str
) -> None:
    dead = f"mongodb://127.0.0.1:{local.free_port()}"
    served = ServedApp(create_app(make_settings(redis_url, dead)))
    try:
        response = Api(served.base).post(
            "/api/v1/calculations", json={"name": "Ada", "weight": 55, "height": 170}
        )
    finally:
        served.close()
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0


def test_submitting_while_the_broker_is_down_answers_503_and_keeps_nothing(
    brokerless_api: Api, store: JobStore
) -> None:
    before = store.jobs.count_documents({})
    response = brokerless_api.post(
        "/api/v1/calculations", json={"name": "Ada", "weight": 55, "height": 170}
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert store.jobs.count_documents({}) == before
