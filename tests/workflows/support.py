"""Submitting a workflow over HTTP and waiting for it to end."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

WORKFLOWS = "/api/v1/workflows"
ENDED = {"succeeded", "failed", "cancelled"}


def submit(api: Api, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """POST a workflow and check it was accepted."""
    response = api.post(WORKFLOWS, json={"steps": steps, **fields})
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith(f"{WORKFLOWS}/{response.json()['id']}")
    return response.json()  # type: ignore[no-any-return]


def wait_ended(api: Api, workflow_id: str, timeout: float = 30) -> dict[str, Any]:
    """The workflow once it has ended."""
    return api.wait_for(f"{WORKFLOWS}/{workflow_id}", lambda w: w["status"] in ENDED, timeout)


def run(api: Api, steps: list[dict[str, Any]], timeout: float = 30) -> dict[str, Any]:
    """Submit a workflow and wait for it to end."""
    return wait_ended(api, submit(api, steps)["id"], timeout)


def step(workflow: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in workflow["steps"] if s["id"] == step_id)


def statuses(workflow: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in workflow["steps"]}
