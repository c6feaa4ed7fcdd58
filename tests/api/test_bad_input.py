"""Bad input on every endpoint: a 4xx problem document, no stack trace, and the store unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.store.jobs import JobStore
from tests.conftest import Api

CALCS = "/api/v1/calculations"
JOBS = "/api/v1/jobs"
BATCH = JOBS + ":batch"
TYPES = "/api/v1/job-types"
SCHEDULES = "/api/v1/schedules"
ADA = {"name": "Ada", "weight": 55, "height": 170}
BMI = {"type": "bmi", "params": ADA}
HOURLY = {**BMI, "interval_seconds": 3600}
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
    ("URI too long", "GET", CALCS + "?limit=" + "1" * 5000, {}),
    ("uppercase id", "POST", CALCS + "/{ID}/cancel", {}),
    ("id with newline", "POST", CALCS + "/{id}%0A/retry", {}),
    ("null byte id", "DELETE", CALCS + "/%00", {}),
    # methods and media types
    ("PUT", "PUT", CALCS + "/{id}", {"json": ADA}),
    ("PATCH", "PATCH", CALCS, {"json": ADA}),
    # the generic jobs: wrong types, missing and extra fields
    ("job without type", "POST", JOBS, {"json": {"params": ADA}}),
    ("job type a number", "POST", JOBS, {"json": {**BMI, "type": 7}}),
    ("job type unknown", "POST", JOBS, {"json": {**BMI, "type": "rm -rf"}}),
    ("job type huge", "POST", JOBS, {"json": {**BMI, "type": "x" * 100_000}}),
    ("job params a list", "POST", JOBS, {"json": {**BMI, "params": [ADA]}}),
    ("job params wrong", "POST", JOBS, {"json": {**BMI, "params": {**ADA, "weight": "heavy"}}}),
    ("job priority a string", "POST", JOBS, {"json": {**BMI, "priority": "1"}}),
    ("job priority 10", "POST", JOBS, {"json": {**BMI, "priority": 10}}),
    ("job run_at naive", "POST", JOBS, {"json": {**BMI, "run_at": "2030-01-01T00:00:00"}}),
    ("job run_at junk", "POST", JOBS, {"json": {**BMI, "run_at": "tomorrow"}}),
    (
        "idempotency key on a workflow",
        "POST",
        "/api/v1/workflows",
        {"json": {"steps": [{"id": "a", "type": "noop"}]}, "headers": {"Idempotency-Key": "k"}},
    ),
    (
        "idempotency key on a schedule",
        "POST",
        SCHEDULES,
        {"json": HOURLY, "headers": {"Idempotency-Key": "k"}},
    ),  # fmt: skip
    ("a step-only type as a job", "POST", JOBS, {"json": {"type": "rank_alignments"}}),
    (
        "a step-only type on a schedule",
        "POST",
        SCHEDULES,
        {"json": {"type": "rank_alignments", "interval_seconds": 60}},
    ),  # fmt: skip
    ("job run_at a number", "POST", JOBS, {"json": {**BMI, "run_at": 1796256000}}),
    ("job run_at digits", "POST", JOBS, {"json": {**BMI, "run_at": "1796256000"}}),
    ("job run_at a tiny number", "POST", JOBS, {"json": {**BMI, "run_at": 12345}}),
    ("job delay negative", "POST", JOBS, {"json": {**BMI, "delay_seconds": -1}}),
    ("job delay a string", "POST", JOBS, {"json": {**BMI, "delay_seconds": "5"}}),
    (
        "job delay and run_at",
        "POST",
        JOBS,
        {"json": {**BMI, "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"}},
    ),  # fmt: skip
    ("job callback not a URL", "POST", JOBS, {"json": {**BMI, "callback_url": "javascript:x"}}),
    ("job extra owner", "POST", JOBS, {"json": {**BMI, "owner": "root"}}),
    ("job extra status", "POST", JOBS, {"json": {**BMI, "status": "succeeded"}}),
    ("job huge body", "POST", JOBS, {"data": b'{"type": "' + b"x" * HUGE + b'"}', "headers": JSON}),
    ("job not JSON", "POST", JOBS, {"data": "type=bmi", "headers": {"Content-Type": "text/plain"}}),
    ("job NaN", "POST", JOBS, {"data": b'{"type":"bmi","priority":NaN}', "headers": JSON}),
    # operators in job bodies
    ("job type operator", "POST", JOBS, {"json": {**BMI, "type": {"$ne": ""}}}),
    ("job params operator", "POST", JOBS, {"json": {**BMI, "params": {"$where": "1"}}}),
    ("job operator key", "POST", JOBS, {"json": {**BMI, "$set": {"status": "x"}}}),
    ("job id operator", "POST", JOBS, {"json": {**BMI, "_id": {"$gt": ""}}}),
    # idempotency keys
    (
        "idempotency key huge",
        "POST",
        JOBS,
        {"json": BMI, "headers": {"Idempotency-Key": "k" * 300}},
    ),
    (
        "idempotency key control",
        "POST",
        JOBS,
        {"json": BMI, "headers": {"Idempotency-Key": "a\tb"}},
    ),
    (
        "idempotency on batch",
        "POST",
        BATCH,
        {"json": {"jobs": [BMI]}, "headers": {"Idempotency-Key": "k"}},
    ),  # fmt: skip
    # batches refused whole
    ("batch a list", "POST", BATCH, {"json": [BMI]}),
    ("batch empty", "POST", BATCH, {"json": {"jobs": []}}),
    ("batch too big", "POST", BATCH, {"json": {"jobs": [BMI] * 1001}}),
    ("batch jobs an object", "POST", BATCH, {"json": {"jobs": {"$in": [BMI]}}}),
    ("batch extra field", "POST", BATCH, {"json": {"jobs": [BMI], "owner": "root"}}),
    ("batch not JSON", "POST", BATCH, {"data": "jobs", "headers": {"Content-Type": "text/plain"}}),
    # job query strings
    ("jobs status operator", "GET", JOBS + "?status[$ne]=x", {}),
    ("jobs status junk", "GET", JOBS + "?status=$ne", {}),
    ("jobs type operator", "GET", JOBS + "?type[$regex]=.*", {}),
    ("jobs type huge", "GET", JOBS + "?type=" + "t" * 5000, {}),
    ("jobs created junk", "GET", JOBS + "?created_after=yesterday", {}),
    ("jobs created naive", "GET", JOBS + "?created_before=2030-01-01T00:00:00", {}),
    ("jobs created operator", "GET", JOBS + "?created_after[$gt]=", {}),
    ("jobs owner filter", "GET", JOBS + "?owner=alice", {}),
    ("jobs limit zero", "GET", JOBS + "?limit=0", {}),
    ("jobs cursor junk", "GET", JOBS + "?cursor=abc", {}),
    # job ids and type names that are not ids or names
    ("job operator id", "GET", JOBS + "/$ne", {}),
    ("job regex id", "DELETE", JOBS + "/.*", {}),
    ("job long id", "POST", JOBS + "/" + "a" * 3000 + "/cancel", {}),
    ("job uppercase id", "POST", JOBS + "/{ID}/retry", {}),
    ("job type operator name", "GET", TYPES + "/$ne", {}),
    ("job type long name", "GET", TYPES + "/" + "n" * 3000, {}),
    ("job types POST", "POST", TYPES, {"json": BMI}),
    ("events operator id", "GET", JOBS + "/$ne/events", {}),
    ("events long id", "GET", JOBS + "/" + "e" * 3000 + "/events", {}),
    ("events unknown id", "GET", JOBS + "/{ID}/events", {}),
    # schedules
    ("schedule without timing", "POST", SCHEDULES, {"json": BMI}),
    ("schedule cron and interval", "POST", SCHEDULES, {"json": {**HOURLY, "cron": "* * * * *"}}),
    ("schedule bad cron", "POST", SCHEDULES, {"json": {**BMI, "cron": "61 * * * *"}}),
    ("schedule cron operator", "POST", SCHEDULES, {"json": {**BMI, "cron": {"$ne": ""}}}),
    ("schedule interval zero", "POST", SCHEDULES, {"json": {**BMI, "interval_seconds": 0}}),
    ("schedule interval string", "POST", SCHEDULES, {"json": {**BMI, "interval_seconds": "60"}}),
    ("schedule type operator", "POST", SCHEDULES, {"json": {**HOURLY, "type": {"$gt": ""}}}),
    ("schedule bad params", "POST", SCHEDULES, {"json": {**HOURLY, "params": {"$where": "1"}}}),
    ("schedule extra owner", "POST", SCHEDULES, {"json": {**HOURLY, "owner": "root"}}),
    (
        "schedule not JSON",
        "POST",
        SCHEDULES,
        {"data": "x", "headers": {"Content-Type": "text/plain"}},
    ),
    ("schedules cursor operator", "GET", SCHEDULES + "?cursor[$ne]=", {}),
    ("schedules owner filter", "GET", SCHEDULES + "?owner=alice", {}),
    ("schedule operator id", "GET", SCHEDULES + "/$ne", {}),
    ("schedule regex id", "DELETE", SCHEDULES + "/.*", {}),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), [pytest.param(m, p, k, id=c) for c, m, p, k in BAD]
)
def test_bad_input_gets_a_4xx_problem_and_changes_nothing(
    idle_api: Api, store: JobStore, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    seeded = idle_api.post(CALCS, json=ADA).json()["id"]
    before = list(store.jobs.find()), list(store.db["schedules"].find())
    url = path.replace("{id}", seeded).replace("{ID}", seeded.upper())
    response = idle_api.request(method, url, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code
    assert {"type", "title", "detail", "errors"} <= problem.keys()
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert (list(store.jobs.find()), list(store.db["schedules"].find())) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CALCS, ADA),
        (JOBS, {"type": "noop"}),
        (BATCH, {"jobs": [{"type": "noop"}]}),
        ("/api/v1/workflows", {"steps": [{"id": "a", "type": "noop"}]}),
        (SCHEDULES, HOURLY),
    ],
)
def test_a_chunked_body_past_the_limit_is_a_413_even_when_its_start_parses(
    idle_api: Api, store: JobStore, path: str, body: dict[str, Any]
) -> None:
    # Valid JSON however much of it is read: only the limit can refuse it.
    padded = json.dumps(body).encode() + b" " * HUGE
    before = store.jobs.count_documents({}), store.db["schedules"].count_documents({})
    response = idle_api.post(path, data=_chunked(padded), headers=JSON)
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == "bodies are limited to 1000000 bytes"
    assert (store.jobs.count_documents({}), store.db["schedules"].count_documents({})) == before
    # The same body within the limit, chunked too, is taken.
    fits = json.dumps(body).encode() + b" " * 1000
    taken = idle_api.post(path, data=_chunked(fits), headers=JSON)
    assert taken.status_code in (200, 201, 202), taken.text
    if path == SCHEDULES:  # it would fire for every later test of this process
        assert idle_api.delete(f"{SCHEDULES}/{taken.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        (JOBS, b'{"type": "bmi", "type": "noop", "params": {}}', "type"),
        (JOBS, b'{"type": "bmi", "params": {"name": "Ada", "name": "Bob"}}', "name"),
        (CALCS, b'{"name": "Ada", "weight": 55, "height": 170, "weight": 90}', "weight"),
        (BATCH, b'{"jobs": [{"type": "noop", "priority": 1, "priority": 9}]}', "priority"),
        ("/api/v1/workflows", b'{"steps": [{"id": "a", "type": "noop", "id": "b"}]}', "id"),
        (SCHEDULES, b'{"type": "noop", "cron": "* * * * *", "cron": "0 * * * *"}', "cron"),
    ],
    ids=["job type", "job param", "calculation", "batch item", "workflow step", "schedule"],
)  # fmt: skip
def test_a_key_given_twice_in_a_json_body_is_a_400_naming_it_and_nothing_is_stored(
    idle_api: Api, store: JobStore, path: str, body: bytes, key: str
) -> None:
    before = store.jobs.count_documents({}), store.db["schedules"].count_documents({})
    response = idle_api.post(path, data=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == f"body names the key {key!r} twice in one object"
    assert (store.jobs.count_documents({}), store.db["schedules"].count_documents({})) == before


# Every operation that reads no query string; {id} is a stored job's id.
NO_QUERY = [
    ("GET", "/api/v1/events"),
    ("GET", JOBS + "/{id}/events"),
    ("GET", JOBS + "/{id}"),
    ("DELETE", JOBS + "/{id}"),
    ("POST", JOBS + "/{id}/cancel"),
    ("POST", JOBS + "/{id}/retry"),
    ("POST", JOBS),
    ("POST", BATCH),
    ("GET", JOBS + "/{id}/files/out.txt"),
    ("GET", TYPES),
    ("GET", TYPES + "/bmi"),
    ("POST", CALCS),
    ("GET", CALCS + "/{id}"),
    ("DELETE", CALCS + "/{id}"),
    ("POST", SCHEDULES),
    ("GET", SCHEDULES + "/{id}"),
    ("DELETE", SCHEDULES + "/{id}"),
    ("POST", "/api/v1/workflows"),
    ("GET", "/api/v1/workflows/{id}"),
    ("POST", "/api/v1/workflows/{id}/cancel"),
    ("POST", "/api/v1/files"),
    ("GET", "/api/v1/files/{id}"),
    ("GET", "/api/v1/files/{id}/content"),
    ("DELETE", "/api/v1/files/{id}"),
]


@pytest.mark.parametrize(("method", "path"), NO_QUERY, ids=[f"{m} {p}" for m, p in NO_QUERY])
def test_a_query_parameter_an_operation_does_not_read_is_refused_naming_it(
    idle_api: Api, store: JobStore, method: str, path: str
) -> None:
    seeded = idle_api.post(CALCS, json=ADA).json()["id"]
    before = list(store.jobs.find()), list(store.db["schedules"].find())
    response = idle_api.request(method, path.replace("{id}", seeded) + "?force=1", json=BMI)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "force"]]
    assert (list(store.jobs.find()), list(store.db["schedules"].find())) == before


def test_operations_that_read_a_query_string_still_take_theirs(idle_api: Api) -> None:
    job = idle_api.post(CALCS, json=ADA).json()["id"]
    for path in (
        JOBS + "?status=queued&limit=1",
        CALCS + "?limit=1",
        SCHEDULES + "?limit=1",
        "/api/v1/workflows?status=running",
        f"{JOBS}/{job}/logs?attempt=1",
        "/api/v1/swagger.json?v=2",  # a document, not a resource: a cache-buster is harmless
    ):
        assert idle_api.get(path).status_code == 200, path
    assert idle_api.get(JOBS + "?force=1").json()["errors"][0]["loc"] == ["query", "force"]


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
