"""The workflow record on the real embedded server: each decision is made by one caller only."""

from __future__ import annotations

import pytest

from jobline.core.settings import Settings
from jobline.store.jobs import JobStore
from jobline.store.workflows import StepStatus, WorkflowStore, new_workflow
from tests.support import listed_by_index_scans


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


@pytest.mark.parametrize("owner", [None, "alice"], ids=["everyone's", "an owner's"])
@pytest.mark.parametrize("status", [None, "queued"], ids=["every status", "queued"])
def test_every_query_of_a_workflow_list_is_an_index_range_scan(
    flows: WorkflowStore, settings: Settings, owner: str | None, status: str | None
) -> None:
    made = []
    for n in range(6):
        workflow = new_workflow([{"id": "a", "type": "t"}], owner="alice" if n % 2 else None,
                                priority=5)  # fmt: skip
        flows.insert(workflow)
        made.append(workflow["_id"])
    listed = listed_by_index_scans(
        settings.mongo_url,
        flows.workflows,
        lambda db: WorkflowStore(db).list,
        owner=owner,
        status=status,
    )
    assert listed == [w for n, w in enumerate(made) if owner is None or n % 2][::-1]


def test_the_owner_index_lists_read_before_they_went_a_status_at_a_time_is_dropped(
    flows: WorkflowStore,
) -> None:
    flows.workflows.create_index([("owner", 1), ("_id", -1)])
    flows.ensure_indexes()
    keys = [info["key"] for info in flows.workflows.index_information().values()]
    assert [("owner", 1), ("_id", -1)] not in keys
    assert [("owner", 1), ("status", 1), ("_id", -1)] in keys
