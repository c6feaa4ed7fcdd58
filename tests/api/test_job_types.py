"""GET /job-types: the catalogue, with each type's schemas and policy."""

from __future__ import annotations

from tests.conftest import Api

TYPES = "/api/v1/job-types"


def test_every_built_in_type_is_listed_with_its_schemas_and_policy(idle_api: Api) -> None:
    response = idle_api.get(TYPES)
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()["items"]}
    assert {"align", "bmi", "noop", "sleep"} <= set(types)
    assert list(types) == sorted(types)
    bmi = types["bmi"]
    assert bmi["params_schema"]["required"] == ["name", "weight", "height"]
    assert bmi["result_schema"]["properties"]["category"]["enum"] == [
        "underweight",
        "normal",
        "overweight",
        "obese",
    ]
    assert bmi["policy"]["queue"] == "default"
    assert bmi["policy"]["soft_time_limit"] < bmi["policy"]["time_limit"]
    assert bmi["policy"]["retry"]["retry_on"] == ["TransientError"]
    assert types["noop"]["result_schema"] is None
    align = types["align"]["params_schema"]["properties"]
    assert align["seq_a"]["anyOf"][0]["maxLength"] == 5000  # or a fasta file instead
    assert align["fasta"]["anyOf"][0]["format"] == "jobline-file"
    assert "Biopython" in types["align"]["description"]


def test_a_type_defined_in_a_test_module_is_listed_and_runs(live_api: Api) -> None:
    greet = live_api.get(f"{TYPES}/test_greet").json()
    assert greet["description"] == "A type a team might add: one model in, one model out."
    assert greet["params_schema"]["required"] == ["name"]
    assert greet["result_schema"]["required"] == ["text"]
    assert "test_greet" in [t["name"] for t in live_api.get(TYPES).json()["items"]]
    job = live_api.submit_and_wait(
        "/api/v1/jobs", {"type": "test_greet", "params": {"name": "Ada", "times": 2}}
    )
    assert job["status"] == "succeeded"
    assert job["result"] == {"text": "hello Ada hello Ada"}


def test_the_flaky_type_shows_its_own_retry_policy(idle_api: Api) -> None:
    policy = idle_api.get(f"{TYPES}/test_flaky").json()["policy"]
    assert policy["retry"]["max_retries"] == 3
    assert policy["retry"]["backoff_seconds"] == 0.2


def test_each_type_shows_how_many_of_it_may_run_at_once(idle_api: Api) -> None:
    types = {t["name"]: t["policy"] for t in idle_api.get(TYPES).json()["items"]}
    assert types["test_licensed"]["max_running"] == 1
    assert types["bmi"]["max_running"] is None
    assert idle_api.get(f"{TYPES}/test_licensed").json()["policy"]["max_running"] == 1


def test_an_unknown_type_is_404(idle_api: Api) -> None:
    response = idle_api.get(f"{TYPES}/no_such_type")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_step_only_type_is_marked_and_refused_as_a_job_but_runs_in_a_workflow(
    idle_api: Api,
) -> None:
    types = {t["name"]: t for t in idle_api.get(TYPES).json()["items"]}
    assert types["rank_alignments"]["policy"]["step_only"] is True
    assert types["bmi"]["policy"]["step_only"] is False
    assert types["bmi"]["policy"]["pure"] is True
    alone = idle_api.post("/api/v1/jobs", json={"type": "rank_alignments"})
    assert alone.status_code == 422
    assert alone.json()["errors"][0]["loc"] == ["type"]
    assert "/api/v1/workflows" in alone.json()["errors"][0]["msg"]
    batch = idle_api.post(
        "/api/v1/jobs:batch", json={"jobs": [{"type": "noop"}, {"type": "rank_alignments"}]}
    ).json()["results"]
    assert [r["status"] for r in batch] == [202, 422]
    steps = [
        {"id": "split", "type": "noop"},
        {"id": "align", "type": "noop"},
        {"id": "rank", "type": "rank_alignments", "needs": ["split", "align"]},
    ]
    assert idle_api.post("/api/v1/workflows", json={"steps": steps}).status_code == 202
