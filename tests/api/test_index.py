"""`GET /api/v1/`: the API's index, where `jobline up`'s banner points."""

from __future__ import annotations

from importlib.metadata import version

import requests

from tests.conftest import Api


def test_the_api_root_answers_its_index_with_links_that_answer(live_api: Api) -> None:
    api = live_api  # with a worker, so that /readyz answers 200 too
    response = api.get("/api/v1/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    index = response.json()
    assert index["api_version"] == "1" and index["version"] == version("jobline")
    assert index["auth"] == "off"
    links = index["links"]
    assert links["docs"] == "/api/v1/docs" and links["spec"] == "/api/v1/swagger.json"
    names = {r["name"]: r for r in index["resources"]}
    spec = api.get("/api/v1/swagger.json").json()
    assert set(names) == {tag["name"] for tag in spec["tags"]} - {"default"}  # every namespace
    assert {"jobs", "job-types", "calculations", "schedules", "events"} <= set(names)
    assert all(r["description"] for r in names.values())
    assert names["logs"]["href"] == "/api/v1/jobs/{job_id}/logs"  # one job's own resource
    fixed = [r["href"] for r in index["resources"] if "{" not in r["href"]]
    for path in [*links.values(), *fixed]:
        # stream=True: /api/v1/events is an endless event stream; its status is enough.
        with api.http.get(api.url(path), stream=True, timeout=10) as answered:
            # /api/v1/files takes uploads only (405 to a GET): there, but not a 404.
            assert answered.status_code in ((200, 405) if path in fixed else (200,)), path


def test_the_api_root_without_its_slash_leads_to_the_index(api: Api) -> None:
    response = requests.get(api.url("/api/v1"), timeout=10)
    assert response.status_code == 200
    assert response.json()["links"]["self"] == "/api/v1/"


def test_the_index_is_public_and_says_keys_are_required(keyed_api: dict[str, Api]) -> None:
    anonymous = keyed_api["anonymous"]
    index = anonymous.get("/api/v1/").json()
    assert index["auth"] == "bearer key required"
    assert anonymous.get("/api/v1/docs").status_code == 200
    assert anonymous.get(index["resources"][0]["href"]).status_code == 401


def test_the_index_is_not_an_operation_of_the_spec(api: Api) -> None:
    spec = api.get("/api/v1/swagger.json").json()
    assert "/" not in spec["paths"]
    assert "/jobs" in spec["paths"]
