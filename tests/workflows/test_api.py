"""The /workflows resource: every validation rule, owners, lists, delete, and the docs."""

from __future__ import annotations

from typing import Any

import pytest

from jobline.store.jobs import JobStore
from jobline.store.workflows import WorkflowStore
from tests.conftest import Api
from tests.workflows.support import WORKFLOWS, submit, wait_ended

GREET = {"type": "test_greet", "params": {"name": "x"}}


def chain(*ids: str) -> list[dict[str, Any]]:
    """Steps each needing the one before."""
    return [{"id": s, **GREET, "needs": [ids[n - 1]] if n else []} for n, s in enumerate(ids)]


BAD_WORKFLOWS = [
    ("no steps", {"steps": []}, ["steps"]),
    ("too many steps", {"steps": chain(*[f"s{n}" for n in range(101)])}, ["steps"]),
    ("a bad id", {"steps": [{"id": "Has Space", **GREET}]}, ["steps", 0, "id"]),
    ("an id too long", {"steps": [{"id": "a" * 65, **GREET}]}, ["steps", 0, "id"]),
    ("a repeated id", {"steps": [{"id": "a", **GREET}, {"id": "a", **GREET}]}, ["steps", 1, "id"]),
    ("an unknown type", {"steps": [{"id": "a", "type": "nope"}]}, ["steps", 0, "type"]),
    (
        "a need that is no step",
        {"steps": [{"id": "a", **GREET}, {"id": "b", **GREET, "needs": ["c"]}]},
        ["steps", 1, "needs"],
    ),
    (
        "a cycle",
        {
            "steps": [
                {"id": "a", **GREET, "needs": ["c"]},
                {"id": "b", **GREET, "needs": ["a"]},
                {"id": "c", **GREET, "needs": ["b"]},
            ]
        },
        ["steps", 0, "needs"],
    ),
    (
        "a step needing itself",
        {"steps": [{"id": "a", **GREET, "needs": ["a"]}]},
        ["steps", 0, "needs"],
    ),
    (
        "for_each not among the needs",
        {
            "steps": [
                {"id": "a", **GREET},
                {"id": "b", **GREET},
                {"id": "c", "type": "test_greet", "needs": ["a"], "for_each": "b"},
            ]
        },
        ["steps", 2, "for_each"],
    ),
    (
        "bad params for a step without for_each",
        {"steps": [{"id": "a", "type": "test_greet", "params": {"times": 2}}]},
        ["steps", 0, "params", "name"],
    ),
    ("an unknown field", {"steps": [{"id": "a", **GREET, "colour": 1}]}, ["steps", 0, "colour"]),
    ("a priority out of range", {"steps": chain("a"), "priority": 10}, ["priority"]),
    (
        "a callback that is not http",
        {"steps": chain("a"), "callback_url": "ftp://x"},
        ["callback_url"],
    ),
    ("steps that are not a list", {"steps": {"a": 1}}, ["steps"]),
]


@pytest.mark.parametrize(
    ("case", "body", "loc"), BAD_WORKFLOWS, ids=[case for case, _, _ in BAD_WORKFLOWS]
)
def test_a_workflow_breaking_a_rule_is_refused_with_422_naming_the_place_and_nothing_is_stored(
    idle_api: Api, flows: WorkflowStore, store: JobStore, case: str, body: Any, loc: list[Any]
) -> None:
    response = idle_api.post(WORKFLOWS, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert loc in [error["loc"] for error in response.json()["errors"]]
    assert flows.workflows.count_documents({}) == 0
    assert flows.runs.count_documents({}) == 0
    assert store.jobs.count_documents({}) == 0


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/hook", "http://[::1]:9/hook", "http://169.254.169.254/latest"]
)
def test_a_callback_to_an_address_webhooks_may_not_reach_is_refused_and_nothing_is_stored(
    idle_api: Api, flows: WorkflowStore, store: JobStore, url: str
) -> None:
    # No worker consumes the idle API's broker: a wrong acceptance could never deliver.
    steps = [{"id": "wait", "type": "test_slow", "params": {"seconds": 600}}]
    response = idle_api.post(WORKFLOWS, json={"steps": steps, "callback_url": url})
    assert response.status_code == 422, response.text
    assert ["callback_url"] in [e["loc"] for e in response.json()["errors"]]
    assert flows.workflows.count_documents({}) == 0 and store.jobs.count_documents({}) == 0


def test_a_fan_out_step_s_params_are_checked_per_item_not_at_submission(
    idle_api: Api, flows: WorkflowStore
) -> None:
    steps = [
        {"id": "list", "type": "test_items"},
        {"id": "each", "type": "test_greet", "needs": ["list"], "for_each": "list"},
    ]
    accepted = submit(idle_api, steps)
    assert [s["status"] for s in accepted["steps"]] == ["queued", "waiting"]
    assert accepted["status"] == "queued" and len(accepted["steps"][0]["job_ids"]) == 1


@pytest.mark.parametrize(
    "body", ["not json", "[1, 2]", '{"steps": "x"}'], ids=["text", "a list", "steps a string"]
)
def test_a_body_that_is_not_a_workflow_is_refused_as_a_problem_not_a_500(
    idle_api: Api, flows: WorkflowStore, body: str
) -> None:
    response = idle_api.post(WORKFLOWS, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_unknown_or_malformed_workflow_id_is_404_on_every_verb(
    idle_api: Api, flows: WorkflowStore
) -> None:
    for path in (f"{WORKFLOWS}/nope", f"{WORKFLOWS}/01a2311b-e549-74bf-88bd-e928529eec5c"):
        assert idle_api.get(path).status_code == 404
        assert idle_api.delete(path).status_code == 404
        assert idle_api.post(f"{path}/cancel").status_code == 404
        assert idle_api.post(f"{path}/retry").status_code == 404


def test_workflows_list_newest_first_by_status_a_page_at_a_time(
    idle_api: Api, flows: WorkflowStore
) -> None:
    made = [submit(idle_api, chain("a", "b"))["id"] for _ in range(3)]
    cancelled = idle_api.post(f"{WORKFLOWS}/{made[1]}/cancel").json()
    assert cancelled["status"] == "cancelled"
    first = idle_api.get(WORKFLOWS, params={"limit": 2}).json()
    assert [w["id"] for w in first["items"]] == [made[2], made[1]]
    rest = idle_api.get(WORKFLOWS, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [w["id"] for w in rest["items"]] == [made[0]] and rest["next_cursor"] is None
    queued = idle_api.get(WORKFLOWS, params={"status": "queued"}).json()
    assert [w["id"] for w in queued["items"]] == [made[2], made[0]]
    assert idle_api.get(WORKFLOWS, params={"status": "bogus"}).status_code == 422
    assert idle_api.get(WORKFLOWS, params={"cursor": "bogus"}).status_code == 400


def test_delete_cancels_the_workflow_and_its_queued_jobs_then_answers_404(
    idle_api: Api, flows: WorkflowStore, store: JobStore
) -> None:
    flow = submit(idle_api, chain("a", "b"))
    job_id = flow["steps"][0]["job_ids"][0]
    assert idle_api.delete(f"{WORKFLOWS}/{flow['id']}").status_code == 204
    assert idle_api.get(f"{WORKFLOWS}/{flow['id']}").status_code == 404
    assert store.get(job_id)["status"] == "cancelled"  # its jobs stay, as jobs
    assert flows.runs.count_documents({}) == 0


def test_a_key_sees_only_its_own_workflows_and_an_admin_sees_all(
    keyed_api: dict[str, Api], flows: WorkflowStore, store: JobStore
) -> None:
    alice, bob, root = keyed_api["alice"], keyed_api["bob"], keyed_api["root"]
    flow = submit(alice, chain("a"))
    path = f"{WORKFLOWS}/{flow['id']}"
    assert flow["owner"] == "alice"
    assert store.get(flow["steps"][0]["job_ids"][0])["owner"] == "alice"
    assert bob.get(path).status_code == 404
    assert bob.post(f"{path}/cancel").status_code == 404
    assert bob.delete(path).status_code == 404
    assert bob.get(WORKFLOWS).json()["items"] == []
    assert [w["id"] for w in alice.get(WORKFLOWS).json()["items"]] == [flow["id"]]
    assert root.get(path).status_code == 200
    assert keyed_api["anonymous"].get(WORKFLOWS).status_code == 401


def test_the_api_docs_describe_the_workflow_endpoints(idle_api: Api) -> None:
    spec = idle_api.get("/api/v1/swagger.json").json()
    assert {"/workflows", "/workflows/{workflow_id}", "/workflows/{workflow_id}/retry"} <= set(
        spec["paths"]
    )
    assert "WorkflowRequest" in spec["definitions"]


def test_with_the_broker_down_a_workflow_gets_503_and_nothing_of_it_is_kept(
    brokerless_api: Api, flows: WorkflowStore, store: JobStore
) -> None:
    store.jobs.delete_many({})
    response = brokerless_api.post(WORKFLOWS, json={"steps": chain("a", "b")})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert flows.workflows.count_documents({}) == 0
    assert flows.runs.count_documents({}) == 0
    assert store.jobs.count_documents({}) == 0


def test_a_step_s_job_is_not_retried_on_its_own_but_through_its_workflow(
    wf_api: Api, store: JobStore
) -> None:
    steps = [{"id": "a", "type": "test_slow", "params": {"seconds": 30}}, *chain("b")]
    steps[1]["needs"] = ["a"]
    flow = submit(wf_api, steps)
    job_id = flow["steps"][0]["job_ids"][0]
    try:
        assert wf_api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        wait_ended(wf_api, flow["id"])
        refused = wf_api.post(f"/api/v1/jobs/{job_id}/retry")
        assert refused.status_code == 409
        assert f"POST /api/v1/workflows/{flow['id']}/retry" in refused.json()["detail"]
        assert store.get(job_id)["status"] == "cancelled"  # the workflow and its step agree
        assert wf_api.post(f"{WORKFLOWS}/{flow['id']}/retry").status_code == 202
    finally:
        wf_api.delete(f"{WORKFLOWS}/{flow['id']}")
