"""Bad input on every endpoint: a 4xx problem document, no stack trace, and the store unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from jobline.api import create_app
from jobline.settings import Settings
from jobline.store import JobStore
from tests.conftest import Api

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}
JSON = {"Content-Type": "application/json"}
HUGE = 2_000_000  # past the 1 MB default body limit


def _chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent with Transfer-Encoding: chunked, so no Content-Length warns the server."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# (case, method, path, request keyword arguments); {id} is a stored job's id.
BAD: list[tuple[str, str, str, dict[str, Any]]] = [
    # wrong types and missing or extra fields
    ("name a number", "POST", CALCS, {"json": {**ADA, "name": 1}}),
    ("name an object", "POST", CALCS, {"json": {**ADA, "name": {"first": "Ada"}}}),
    ("weight a string", "POST", CALCS, {"json": {**ADA, "weight": "55"}}),
    ("height a boolean", "POST", CALCS, {"json": {**ADA, "height": False}}),
    ("weight huge integer", "POST", CALCS, {"json": {**ADA, "weight": 10**400}}),
    ("missing height", "POST", CALCS, {"json": {"name": "Ada", "weight": 55}}),
    ("empty object", "POST", CALCS, {"json": {}}),
    ("null body", "POST", CALCS, {"json": None, "data": b"null", "headers": JSON}),
    ("extra field", "POST", CALCS, {"json": {**ADA, "owner": "root"}}),
    ("extra status", "POST", CALCS, {"json": {**ADA, "status": "succeeded"}}),
    ("extra id", "POST", CALCS, {"json": {**ADA, "_id": "x"}}),
    # huge strings and bodies
    ("huge name", "POST", CALCS, {"json": {**ADA, "name": "x" * 100_000}}),
    ("huge body", "POST", CALCS, {"data": b'{"name": "' + b"x" * HUGE + b'"}', "headers": JSON}),
    (
        "huge chunked body",
        "POST",
        CALCS,
        {"data": _chunked(b'{"name": "' + b"x" * HUGE + b'"}'), "headers": JSON},
    ),
    ("deeply nested body", "POST", CALCS, {"data": b"[" * 200_000, "headers": JSON}),
    ("huge body on cancel", "POST", CALCS + "/{id}/cancel", {"data": b"x" * HUGE}),
    # not JSON
    ("form body", "POST", CALCS, {"data": {"name": "Ada", "weight": "55", "height": "170"}}),
    ("text body", "POST", CALCS, {"data": "Ada", "headers": {"Content-Type": "text/plain"}}),
    ("no content type", "POST", CALCS, {"data": b'{"name": "Ada"}'}),
    ("truncated JSON", "POST", CALCS, {"data": b'{"name": ', "headers": JSON}),
    ("NaN", "POST", CALCS, {"data": b'{"name":"A","weight":NaN,"height":1}', "headers": JSON}),
    (
        "-Infinity",
        "POST",
        CALCS,
        {"data": b'{"name":"A","weight":1,"height":-Infinity}', "headers": JSON},
    ),  # fmt: skip
    (
        "latin-1 body",
        "POST",
        CALCS,
        {"data": '{"name": "Zoë"}'.encode("latin-1"), "headers": JSON},
    ),  # fmt: skip
    # MongoDB operators in bodies
    ("operator as name", "POST", CALCS, {"json": {**ADA, "name": {"$ne": None}}}),
    ("operator as weight", "POST", CALCS, {"json": {**ADA, "weight": {"$gt": 0}}}),
    ("operator key", "POST", CALCS, {"json": {**ADA, "$where": "sleep(1000)"}}),
    ("dotted key", "POST", CALCS, {"json": {**ADA, "params.name": "x"}}),
    # MongoDB operators and other junk in query strings
    ("bracket operator", "GET", CALCS + "?status[$ne]=x", {}),
    ("operator value", "GET", CALCS + "?status=$ne", {}),
    ("operator limit", "GET", CALCS + "?limit[$gt]=0", {}),
    ("operator cursor", "GET", CALCS + "?cursor[$ne]=", {}),
    ("json cursor", "GET", CALCS + '?cursor={"$gt":""}', {}),
    ("limit twice", "GET", CALCS + "?limit=1&limit=2", {}),
    ("limit huge", "GET", CALCS + "?limit=" + "9" * 5000, {}),
    ("limit NaN", "GET", CALCS + "?limit=NaN", {}),
    ("owner filter", "GET", CALCS + "?owner=alice", {}),
    ("where", "GET", CALCS + "?$where=1", {}),
    # ids that are not ids
    ("operator id", "GET", CALCS + "/$ne", {}),
    ("json id", "GET", CALCS + '/{"$ne":null}', {}),
    ("regex id", "DELETE", CALCS + "/.*", {}),
    ("long id", "GET", CALCS + "/" + "a" * 3000, {}),
    ("uppercase id", "POST", CALCS + "/{ID}/cancel", {}),
    ("id with newline", "POST", CALCS + "/{id}%0A/retry", {}),
    ("null byte id", "DELETE", CALCS + "/%00", {}),
    # methods and media types
    ("PUT", "PUT", CALCS + "/{id}", {"json": ADA}),
    ("PATCH", "PATCH", CALCS, {"json": ADA}),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), [pytest.param(m, p, k, id=c) for c, m, p, k in BAD]
)
def test_bad_input_gets_a_4xx_problem_and_changes_nothing(
    idle_api: Api, store: JobStore, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    seeded = idle_api.post(CALCS, json=ADA).json()["id"]
    before = list(store.jobs.find())
    url = path.replace("{id}", seeded).replace("{ID}", seeded.upper())
    response = idle_api.request(method, url, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code
    assert {"type", "title", "detail", "errors"} <= problem.keys()
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert list(store.jobs.find()) == before


def test_a_job_id_lookalike_never_reaches_a_query_as_an_operator(
    idle_api: Api, store: JobStore
) -> None:
    idle_api.post(CALCS, json=ADA)
    for url in (CALCS + "?cursor[$gt]=", CALCS + "/[$ne]", CALCS + "?type=test_broken"):
        assert idle_api.get(url).status_code in (404, 422)
    assert len(idle_api.get(CALCS).json()["items"]) == 1


@pytest.fixture
def failing_app(settings: Settings) -> Flask:
    """An app whose store fails in a way nobody planned for."""
    app = create_app(settings)
    store = app.extensions["jobline"].store

    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("password=hunter2 at /srv/secret/path.py")

    store.list = explode
    return app


def test_an_unexpected_error_is_a_500_problem_without_details(failing_app: Flask) -> None:
    response = failing_app.test_client().get(CALCS)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
