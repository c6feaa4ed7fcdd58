"""The generic job endpoints, end to end: submit, read, cancel, retry, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate

from jobline.store.jobs import JobStore
from tests.conftest import Api

JOBS = "/api/v1/jobs"
ADA = {"name": "Ada", "weight": 55, "height": 170}


def test_a_noop_job_succeeds_at_once(live_api: Api) -> None:
    job = live_api.submit_and_wait(JOBS, {"type": "noop"})
    assert job["status"] == "succeeded"
    assert job["type"] == "noop"
    assert job["result"] is None
    assert job["progress"] == 1.0


def test_a_bmi_job_is_the_same_work_as_a_calculation(live_api: Api) -> None:
    job = live_api.submit_and_wait(JOBS, {"type": "bmi", "params": ADA})
    assert job["result"] == {"bmi": 19.03, "category": "normal"}
    calculation = live_api.get(f"/api/v1/calculations/{job['id']}").json()
    assert calculation["pid"] == job["id"]
    assert calculation["result"] == job["result"]


def test_a_sleep_job_stores_its_progress_while_it_runs(live_api: Api) -> None:
    response = live_api.post(JOBS, json={"type": "sleep", "params": {"seconds": 3, "steps": 6}})
    assert response.status_code == 202
    path = response.headers["Location"]
    midway = live_api.wait_for(path, lambda j: j["status"] == "running" and 0 < j["progress"] < 1)
    assert midway["progress_message"].startswith("step ")
    done = live_api.wait_terminal(path)
    assert done["status"] == "succeeded"
    assert done["progress"] == 1.0
    assert 3 <= done["result"]["slept"] < 30


def test_submission_answers_202_with_the_job_and_its_location(idle_api: Api) -> None:
    response = idle_api.post(JOBS, json={"type": "sleep", "params": {"seconds": 1}})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"{JOBS}/{job['id']}"
    assert job["status"] == "queued"
    assert job["params"] == {"seconds": 1, "steps": 10}
    assert job["priority"] == 5
    assert job["queue"] == "default"
    assert idle_api.get(response.headers["Location"]).json() == job


def test_priority_callback_and_delay_are_kept_on_the_job(idle_api: Api) -> None:
    body = {
        "type": "noop",
        "priority": 9,
        "delay_seconds": 600,
        # A public address, never reached:
        # no worker consumes this API's queue, and the job waits ten minutes.
        "callback_url": "https://93.184.215.14/hook?x=1",
    }
    before = datetime.now(UTC)
    job = idle_api.post(JOBS, json=body).json()
    assert job["priority"] == 9
    assert job["callback_url"] == "https://93.184.215.14/hook?x=1"
    assert job["status"] == "scheduled"
    run_at = datetime.fromisoformat(job["run_at"])
    assert before + timedelta(seconds=599) <= run_at <= datetime.now(UTC) + timedelta(seconds=601)


def test_a_job_with_run_at_in_the_future_is_scheduled_for_then(idle_api: Api) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    job = idle_api.post(JOBS, json={"type": "noop", "run_at": at.isoformat()}).json()
    assert job["status"] == "scheduled"
    assert datetime.fromisoformat(job["run_at"]) == at


def test_an_unknown_type_is_a_422_naming_the_type(idle_api: Api, store: JobStore) -> None:
    response = idle_api.post(JOBS, json={"type": "no_such_type", "params": {}})
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["loc"] == ["type"]
    assert "bmi" in error["msg"] and "noop" in error["msg"]
    assert store.jobs.count_documents({}) == 0


IN_AN_HOUR = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

BAD_REQUESTS: list[tuple[str, Any, list[str]]] = [
    ("missing type", {"params": {}}, ["type"]),
    ("type not a string", {"type": 3}, ["type"]),
    ("empty type", {"type": ""}, ["type"]),
    ("unknown field", {"type": "noop", "when": "now"}, ["when"]),
    ("params a list", {"type": "bmi", "params": [ADA]}, ["params"]),
    (
        "params missing a field",
        {"type": "bmi", "params": {"name": "A", "weight": 5}},
        ["params.height"],
    ),
    ("params out of range", {"type": "bmi", "params": {**ADA, "weight": -1}}, ["params.weight"]),
    (
        "params two bad fields",
        {"type": "bmi", "params": {**ADA, "weight": 0, "height": "x"}},
        ["params.weight", "params.height"],
    ),
    ("params unknown field", {"type": "noop", "params": {"x": 1}}, ["params.x"]),
    ("sleep too long", {"type": "sleep", "params": {"seconds": 601}}, ["params.seconds"]),
    ("sleep no steps", {"type": "sleep", "params": {"steps": 0}}, ["params.steps"]),
    ("priority above 9", {"type": "noop", "priority": 10}, ["priority"]),
    ("priority negative", {"type": "noop", "priority": -1}, ["priority"]),
    ("priority a string", {"type": "noop", "priority": "5"}, ["priority"]),
    ("priority a fraction", {"type": "noop", "priority": 1.5}, ["priority"]),
    ("delay negative", {"type": "noop", "delay_seconds": -1}, ["delay_seconds"]),
    ("delay over a year", {"type": "noop", "delay_seconds": 400 * 86400}, ["delay_seconds"]),
    ("delay not a number", {"type": "noop", "delay_seconds": "soon"}, ["delay_seconds"]),
    ("run_at without a zone", {"type": "noop", "run_at": "2030-01-01T00:00:00"}, ["run_at"]),
    ("run_at not a time", {"type": "noop", "run_at": "tomorrow"}, ["run_at"]),
    ("run_at and delay", {"type": "noop", "run_at": IN_AN_HOUR, "delay_seconds": 5}, [""]),
    ("callback not a URL", {"type": "noop", "callback_url": "not a url"}, ["callback_url"]),
    ("callback ftp", {"type": "noop", "callback_url": "ftp://example.org/x"}, ["callback_url"]),
    ("callback file", {"type": "noop", "callback_url": "file:///etc/passwd"}, ["callback_url"]),
    (
        "callback too long",
        {"type": "noop", "callback_url": "http://e.org/" + "x" * 2000},
        ["callback_url"],
    ),
    ("body a list", [{"type": "noop"}], [""]),
]


@pytest.mark.parametrize(
    ("body", "fields"), [pytest.param(b, f, id=name) for name, b, f in BAD_REQUESTS]
)
def test_invalid_job_requests_get_422_naming_each_bad_field(
    idle_api: Api, store: JobStore, body: Any, fields: list[str]
) -> None:
    response = idle_api.post(JOBS, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    named = {".".join(str(p) for p in e["loc"]) for e in response.json()["errors"]}
    assert named == set(fields)
    assert store.jobs.count_documents({}) == 0


def test_cancelling_a_queued_job_keeps_it_cancelled_and_it_can_be_retried(idle_api: Api) -> None:
    job = idle_api.post(JOBS, json={"type": "noop"}).json()
    cancelled = idle_api.post(f"{JOBS}/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    retried = idle_api.post(f"{JOBS}/{job['id']}/retry")
    assert retried.status_code == 202
    assert retried.headers["Location"] == f"{JOBS}/{job['id']}"
    assert retried.json()["status"] == "queued"
    assert retried.json()["finished_at"] is None


def test_only_failed_or_cancelled_jobs_can_be_retried(idle_api: Api) -> None:
    job = idle_api.post(JOBS, json={"type": "noop"}).json()
    response = idle_api.post(f"{JOBS}/{job['id']}/retry")
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_failed_job_runs_again_when_retried(live_api: Api) -> None:
    job = live_api.submit_and_wait(JOBS, {"type": "test_broken"})
    assert job["status"] == "failed"
    assert live_api.post(f"{JOBS}/{job['id']}/retry").status_code == 202
    again = live_api.wait_for(f"{JOBS}/{job['id']}", lambda j: j["attempts"] == 2)
    assert live_api.wait_terminal(f"{JOBS}/{again['id']}")["status"] == "failed"


def test_deleting_a_job_cancels_and_removes_it(idle_api: Api, store: JobStore) -> None:
    job = idle_api.post(JOBS, json={"type": "noop"}).json()
    response = idle_api.delete(f"{JOBS}/{job['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert store.jobs.find_one({"_id": job["id"]}) is None
    assert idle_api.get(f"{JOBS}/{job['id']}").status_code == 404


def test_a_calculation_is_a_job_but_a_job_of_another_type_is_no_calculation(
    idle_api: Api,
) -> None:
    calc = idle_api.post("/api/v1/calculations", json=ADA).json()
    assert idle_api.get(f"{JOBS}/{calc['id']}").json()["type"] == "bmi"
    other = idle_api.post(JOBS, json={"type": "noop"}).json()
    assert idle_api.get(f"/api/v1/calculations/{other['id']}").status_code == 404
    assert idle_api.delete(f"/api/v1/calculations/{other['id']}").status_code == 404
    assert idle_api.get(f"{JOBS}/{other['id']}").status_code == 200


# A well-formed id no job has: fixed, so every collection of the suite names the same tests.
UNKNOWN_ID = "0190a5c3-0000-7000-8000-000000000000"


@pytest.mark.parametrize("base", [JOBS, "/api/v1/calculations"])
@pytest.mark.parametrize("job_id", [UNKNOWN_ID, "nope", "1" * 36, "../../etc", "%24ne"])
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("POST", "/retry")]
)
def test_unknown_jobs_and_calculations_are_404_problems(
    idle_api: Api, base: str, job_id: str, method: str, suffix: str
) -> None:
    response = idle_api.request(method, f"{base}/{job_id}{suffix}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["title"]


def test_the_spec_documents_every_type_s_request(idle_api: Api) -> None:
    spec = idle_api.get("/api/v1/swagger.json").json()
    validate(spec)  # a valid Swagger 2.0 document
    for path in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/retry",
        "/jobs:batch",
        "/job-types",
    ):
        assert path in spec["paths"], path
    definitions = spec["definitions"]
    body = spec["paths"]["/jobs"]["post"]["parameters"]
    assert any(p.get("schema") == {"$ref": "#/definitions/JobRequest"} for p in body)
    request = definitions["JobRequest"]
    assert {"align", "bmi", "noop", "sleep", "test_greet"} <= set(
        request["properties"]["type"]["enum"]
    )
    assert {"$ref": "#/definitions/align.request"} in request["x-oneOf"]
    align = definitions["align.request"]
    assert align["properties"]["type"]["enum"] == ["align"]
    assert align["properties"]["params"] == {"$ref": "#/definitions/align.params"}
    # seq_a and seq_b, or a fasta file: neither is required on its own.
    align_params = definitions["align.params"]["properties"]
    assert align_params["seq_a"]["x-nullable"] is True
    assert align_params["fasta"]["format"] == "jobline-file"
    # Nested models are definitions of their own, named after their type.
    scoring = definitions["align.params"]["properties"]["scoring"]
    assert scoring["allOf"] == [{"$ref": "#/definitions/align.Scoring"}]
    assert "align.Scoring" in definitions
    assert definitions["bmi.params"]["properties"]["weight"]["exclusiveMinimum"] is True
    assert "test_greet.result" in definitions
