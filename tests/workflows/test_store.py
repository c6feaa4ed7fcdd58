"""The workflow record on the real embedded server: each decision is made by one caller only."""

from __future__ import annotations

from jobline.store.jobs import JobStore
from jobline.store.workflows import StepStatus, WorkflowStore, new_workflow


def stored(flows: WorkflowStore) -> str:
    workflow = new_workflow(
        [{"id": "a", "type": "t"}, {"id": "b", "type": "t", "needs": ["a"], "for_each": "a"}],
        owner=None,
        priority=5,
    )
    flows.insert(workflow)
    return str(workflow["_id"])


def test_a_step_is_released_once_however_many_callers_try(
    flows: WorkflowStore, store: JobStore
) -> None:
    workflow_id = stored(flows)
    first = flows.record_run(workflow_id, 1, 0, ["x1", "x2"])
    again = flows.record_run(workflow_id, 1, 0, ["y1"])
    assert first["job_ids"] == again["job_ids"] == ["x1", "x2"]
    assert flows.release_step(workflow_id, 1, 0, 2) is True
    assert flows.release_step(workflow_id, 1, 0, 2) is False
    assert flows.get(workflow_id)["steps"][1]["status"] == "queued"


def test_only_one_caller_closes_a_counted_fan_out_and_a_stale_run_changes_nothing(
    flows: WorkflowStore, store: JobStore
) -> None:
    workflow_id = stored(flows)
    flows.record_run(workflow_id, 1, 0, ["x1", "x2"])
    flows.release_step(workflow_id, 1, 0, 2)
    assert flows.count_member(workflow_id, 1, 0) and flows.count_member(workflow_id, 1, 0)
    assert flows.count_member(workflow_id, 1, 1) is False  # another run's member
    close = {"result": [1, 2], "done": 2}
    assert flows.end_step(workflow_id, 1, 0, StepStatus.SUCCEEDED, **close) is True
    assert flows.end_step(workflow_id, 1, 0, StepStatus.SUCCEEDED, **close) is False
    assert flows.find_run(workflow_id, 1, 0)["result"] == [1, 2]
    assert flows.recount(workflow_id, 1, 0, 5) is False  # a closed step is not counted again


def test_a_fan_out_is_not_closed_before_its_count_reaches_its_total(
    flows: WorkflowStore, store: JobStore
) -> None:
    workflow_id = stored(flows)
    flows.record_run(workflow_id, 1, 0, ["x1", "x2"])
    flows.release_step(workflow_id, 1, 0, 2)
    flows.count_member(workflow_id, 1, 0)
    assert flows.end_step(workflow_id, 1, 0, StepStatus.SUCCEEDED, result=[], done=2) is False
    assert flows.recount(workflow_id, 1, 0, 2) is True
    assert flows.end_step(workflow_id, 1, 0, StepStatus.SUCCEEDED, result=[], done=2) is True
