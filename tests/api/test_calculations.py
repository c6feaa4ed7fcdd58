"""The seed's endpoints, end to end: HTTP API, Celery worker, MongoDB store."""

from __future__ import annotations

import pytest

from tests.conftest import Api

CALCS = "/api/v1/calculations"


@pytest.mark.parametrize(
    ("weight", "height", "bmi", "category"),
    [
        (55, 170, 19.03, "normal"),
        (45, 170, 15.57, "underweight"),
        (80, 170, 27.68, "overweight"),
        (100.5, 165.5, 36.69, "obese"),
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
    assert job["params"] == {"name": "Ada", "weight": weight, "height": height}
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["created_at"].endswith("Z")


def test_submission_answers_202_with_the_queued_job_and_its_location(api: Api) -> None:
    response = api.post(CALCS, json={"name": "Ada", "weight": 55, "height": 170})
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued"
    assert job["type"] == "bmi"
    assert job["result"] is None and job["error"] is None
    assert response.headers["Location"] == f"{CALCS}/{job['id']}"
    assert api.get(response.headers["Location"]).json()["id"] == job["id"]
