"""The seed's endpoints, end to end: HTTP API, Celery worker, MongoDB store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}


@pytest.mark.parametrize(
    ("weight", "height", "bmi", "category"),
    [
        (55, 170, 19.03, "normal"),
        (45, 170, 15.57, "underweight"),
        (80, 170, 27.68, "overweight"),
        (100.5, 165.5, 36.69, "obese"),
        (1000, 300, 111.11, "obese"),
    ],
)
def test_a_submitted_calculation_succeeds_with_the_right_bmi_and_category(
    live_api: Api, weight: float, height: float, bmi: float, category: str
) -> None:
    job = live_api.submit_and_wait(CALCS, {"name": "Ada", "weight": weight, "height": height})
    assert job["status"] == "succeeded"
    assert job["result"] == {"bmi": bmi, "category": category}
    assert job["pid"] == job["id"]
    assert job["progress"] == 1.0
    assert job["attempts"] == 1
    assert job["error"] is None
    assert job["params"] == {"name": "Ada", "weight": weight, "height": height}
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["created_at"].endswith("Z")


def test_submission_answers_202_with_the_queued_job_and_its_location(idle_api: Api) -> None:
    response = idle_api.post(CALCS, json=ADA)
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued"
    assert job["type"] == "bmi"
    assert job["attempts"] == 0
    assert job["result"] is None and job["error"] is None
    assert response.headers["Location"] == f"{CALCS}/{job['id']}"
    assert idle_api.get(response.headers["Location"]).json() == job


def _submit(api: Api, n: int) -> list[str]:
    ids_ = []
    for i in range(n):
        response = api.post(CALCS, json={"name": f"p{i}", "weight": 50 + i, "height": 170})
        assert response.status_code == 202
        ids_.append(response.json()["id"])
    return ids_


def test_the_list_is_newest_first_and_pages_with_next_cursor(idle_api: Api) -> None:
    submitted = _submit(idle_api, 7)
    seen: list[str] = []
    url = f"{CALCS}?limit=3"
    pages = 0
    while True:
        body = idle_api.get(url).json()
        pages += 1
        assert len(body["items"]) <= 3
        seen += [item["id"] for item in body["items"]]
        assert all(item["pid"] == item["id"] for item in body["items"])
        if body["next_cursor"] is None:
            break
        url = f"{CALCS}?limit=3&cursor={body['next_cursor']}"
    assert pages == 3
    assert seen == list(reversed(submitted))


def test_the_list_defaults_to_fifty_and_shows_only_calculations(idle_api: Api) -> None:
    _submit(idle_api, 2)
    body = idle_api.get(CALCS).json()
    assert len(body["items"]) == 2
    assert body["next_cursor"] is None
    assert {item["type"] for item in body["items"]} == {"bmi"}


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "cursor=not-a-cursor",
        "cursor=" + "x" * 300,
        "unknown=1",
    ],
)
def test_bad_list_queries_are_refused_with_a_problem(idle_api: Api, query: str) -> None:
    response = idle_api.get(f"{CALCS}?{query}")
    assert response.status_code in (400, 422)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code


def test_getting_a_calculation_returns_it(live_api: Api) -> None:
    job = live_api.submit_and_wait(CALCS, ADA)
    again = live_api.get(f"{CALCS}/{job['id']}")
    assert again.status_code == 200
    assert again.json() == job


def test_deleting_a_finished_calculation_removes_it(live_api: Api) -> None:
    job = live_api.submit_and_wait(CALCS, ADA)
    assert live_api.delete(f"{CALCS}/{job['id']}").status_code == 204
    assert live_api.get(f"{CALCS}/{job['id']}").status_code == 404
    assert job["id"] not in [j["id"] for j in live_api.get(CALCS).json()["items"]]


def test_deleting_a_queued_calculation_cancels_and_removes_it(idle_api: Api, store: Any) -> None:
    job = idle_api.post(CALCS, json=ADA).json()
    response = idle_api.delete(f"{CALCS}/{job['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert store.jobs.find_one({"_id": job["id"]}) is None


def test_cancelling_a_queued_calculation_keeps_it_cancelled(idle_api: Api) -> None:
    job = idle_api.post(CALCS, json=ADA).json()
    response = idle_api.post(f"{CALCS}/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert idle_api.get(f"{CALCS}/{job['id']}").json()["status"] == "cancelled"


BAD_BODIES: list[tuple[str, Any, list[str]]] = [
    ("missing name", {"weight": 55, "height": 170}, ["name"]),
    ("missing everything", {}, ["name", "weight", "height"]),
    ("empty name", {**ADA, "name": ""}, ["name"]),
    ("blank name", {**ADA, "name": "   "}, ["name"]),
    ("name too long", {**ADA, "name": "x" * 201}, ["name"]),
    ("name not a string", {**ADA, "name": 42}, ["name"]),
    ("weight zero", {**ADA, "weight": 0}, ["weight"]),
    ("weight negative", {**ADA, "weight": -5}, ["weight"]),
    ("weight over 1000", {**ADA, "weight": 1000.01}, ["weight"]),
    ("height zero", {**ADA, "height": 0}, ["height"]),
    ("height in metres", {**ADA, "height": 1.8}, ["height"]),
    ("height over 300", {**ADA, "height": 301}, ["height"]),
    ("weight as string", {**ADA, "weight": "55"}, ["weight"]),
    ("height as boolean", {**ADA, "height": True}, ["height"]),
    ("weight null", {**ADA, "weight": None}, ["weight"]),
    ("weight a list", {**ADA, "weight": [55]}, ["weight"]),
    ("unknown field", {**ADA, "age": 3}, ["age"]),
    ("operator field", {**ADA, "$where": "1"}, ["$where"]),
    ("body a list", [ADA], [""]),
    ("body a string", "Ada", [""]),
]


@pytest.mark.parametrize(
    ("body", "fields"), [pytest.param(b, f, id=name) for name, b, f in BAD_BODIES]
)
def test_invalid_calculations_get_422_naming_each_bad_field(
    idle_api: Api, store: Any, body: Any, fields: list[str]
) -> None:
    response = idle_api.post(CALCS, json=body)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    named = {".".join(str(p) for p in error["loc"]) for error in problem["errors"]}
    assert named == set(fields)
    assert store.jobs.count_documents({}) == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b'{"name": "Ada", "weight": NaN, "height": 170}', "application/json", 400),
        (b'{"name": "Ada", "weight": Infinity, "height": 170}', "application/json", 400),
        (b'{"name": "Ada", "weight": 1e999, "height": 170}', "application/json", 422),
        (b'{"name": "Ada",', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"", "application/json", 400),
        (b"name=Ada&weight=55&height=170", "application/x-www-form-urlencoded", 415),
        (b'{"name": "Ada", "weight": 55, "height": 170}', "text/plain", 415),
        (b'{"name": "Ada", "weight": 55, "height": 170}', None, 415),
    ],
)
def test_bodies_that_are_not_valid_json_get_a_4xx_problem(
    idle_api: Api, store: Any, data: bytes, content_type: str | None, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = idle_api.post(CALCS, data=data, headers=headers)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert store.jobs.count_documents({}) == 0


def test_a_huge_body_gets_413(idle_api: Api, store: Any) -> None:
    body = b'{"name": "' + b"x" * 2_000_000 + b'", "weight": 55, "height": 170}'
    response = idle_api.post(CALCS, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert store.jobs.count_documents({}) == 0


def test_swagger_ui_and_spec_are_served(idle_api: Api) -> None:
    assert idle_api.get("/api/v1/docs").status_code == 200
    spec = idle_api.get("/api/v1/swagger.json").json()
    assert "/calculations" in spec["paths"]
    assert "/calculations/{pid}" in spec["paths"]
    assert spec["definitions"]["BmiParams"]["required"] == ["name", "weight", "height"]


def test_wrong_methods_and_unknown_paths_are_problems(idle_api: Api) -> None:
    response = idle_api.request("PUT", CALCS, json=ADA)
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/problem+json"
    response = idle_api.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
