"""Workflows run by the real worker: chains, diamonds, fan-out, failure, cancel and retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobline.store.jobs import JobStore
from tests.conftest import Api
from tests.support import wait_until
from tests.workflows.support import ENDED, WORKFLOWS, run, statuses, step, submit, wait_ended


def ended(api: Api, workflow_id: str) -> dict[str, object] | None:
    workflow = api.get(f"{WORKFLOWS}/{workflow_id}").json()
    return workflow if workflow["status"] in ENDED else None


def greet(step_id: str, name: str, **more: object) -> dict[str, object]:
    return {"id": step_id, "type": "test_greet", "params": {"name": name}, **more}


def inputs_of(step_id: str, needs: list[str]) -> dict[str, object]:
    return {"id": step_id, "type": "test_inputs", "needs": needs}


def test_a_chain_runs_in_order_and_each_step_gets_the_results_of_its_needs(
    wf_api: Api, store: JobStore
) -> None:
    done = run(wf_api, [greet("a", "ada"), inputs_of("b", ["a"])])
    assert done["status"] == "succeeded"
    assert statuses(done) == {"a": "succeeded", "b": "succeeded"}
    assert step(done, "a")["result"] == {"text": "hello ada"}
    assert step(done, "b")["result"] == {"inputs": {"a": {"text": "hello ada"}}}
    a_job, b_job = (
        store.get(step(done, "a")["job_ids"][0]),
        store.get(step(done, "b")["job_ids"][0]),
    )
    assert a_job["finished_at"] <= b_job["started_at"]
    assert done["started_at"] is not None and done["finished_at"] is not None
    # each step run is an ordinary job, in /jobs, naming its workflow and step
    shown = wf_api.get(f"/api/v1/jobs/{b_job['_id']}").json()
    assert (shown["workflow_id"], shown["step"], shown["status"]) == (done["id"], "b", "succeeded")


def test_a_diamond_releases_its_last_step_once_with_both_branches_results(
    wf_api: Api, store: JobStore
) -> None:
    done = run(
        wf_api,
        [
            greet("top", "t"),
            greet("left", "l", needs=["top"]),
            greet("right", "r", needs=["top"]),
            inputs_of("bottom", ["left", "right"]),
        ],
    )
    assert done["status"] == "succeeded"
    assert step(done, "bottom")["result"] == {
        "inputs": {"left": {"text": "hello l"}, "right": {"text": "hello r"}}
    }
    assert len(step(done, "bottom")["job_ids"]) == 1
    assert store.jobs.count_documents({"workflow_id": done["id"]}) == 4


def test_a_fan_out_runs_one_job_per_item_and_its_result_keeps_the_items_order(
    wf_api: Api, store: JobStore
) -> None:
    done = run(
        wf_api,
        [
            {"id": "list", "type": "test_items", "params": {"count": 6}},
            {
                "id": "each",
                "type": "test_greet",
                "params": {"times": 2},
                "needs": ["list"],
                "for_each": "list",
            },
            inputs_of("join", ["list", "each"]),
        ],
    )
    assert done["status"] == "succeeded"
    each = step(done, "each")
    assert each["result"] == [{"text": f"hello n{i} hello n{i}"} for i in range(6)]
    assert (each["done"], each["total"], len(set(each["job_ids"]))) == (6, 6, 6)
    items = [store.get(job_id) for job_id in each["job_ids"]]
    assert [job["params"] for job in items] == [{"name": f"n{i}", "times": 2} for i in range(6)]
    assert step(done, "join")["result"]["inputs"]["each"] == each["result"]


def test_an_empty_fan_out_succeeds_at_once_with_an_empty_list_and_no_job(wf_api: Api) -> None:
    done = run(
        wf_api,
        [
            {"id": "list", "type": "test_items", "params": {"count": 0}},
            {"id": "each", "type": "test_greet", "needs": ["list"], "for_each": "list"},
            inputs_of("join", ["each"]),
        ],
    )
    assert done["status"] == "succeeded"
    assert step(done, "each")["result"] == [] and step(done, "each")["job_ids"] == []
    assert step(done, "join")["result"] == {"inputs": {"each": []}}


def test_a_bad_fan_out_item_fails_the_step_with_bad_input_naming_the_item(wf_api: Api) -> None:
    done = run(
        wf_api,
        [
            {"id": "list", "type": "test_items", "params": {"count": 4, "bad_at": 2}},
            {"id": "each", "type": "test_greet", "needs": ["list"], "for_each": "list"},
            inputs_of("join", ["each"]),
        ],
    )
    assert done["status"] == "failed"
    error = step(done, "each")["error"]
    assert (error["reason"], error["item"]) == ("bad_input", 2)
    assert "item 2" in error["message"] and step(done, "each")["job_ids"] == []
    assert step(done, "join")["status"] == "skipped"
    assert done["error"]["step"] == "each" and done["error"]["reason"] == "bad_input"


def test_a_failed_step_skips_its_dependents_while_an_independent_branch_succeeds(
    wf_api: Api,
) -> None:
    done = run(
        wf_api,
        [
            {"id": "bad", "type": "test_broken"},
            greet("after", "x", needs=["bad"]),
            greet("later", "y", needs=["after"]),
            greet("alone", "z"),
            greet("then", "w", needs=["alone"]),
        ],
    )
    assert done["status"] == "failed"
    assert statuses(done) == {
        "bad": "failed",
        "after": "skipped",
        "later": "skipped",
        "alone": "succeeded",
        "then": "succeeded",
    }
    assert step(done, "after")["job_ids"] == [] and step(done, "later")["job_ids"] == []
    assert done["error"]["step"] == "bad"
    assert "bad data" in done["error"]["message"]


def test_cancelling_a_workflow_stops_its_running_step_and_nothing_after_it_starts(
    wf_api: Api, store: JobStore
) -> None:
    flow = submit(
        wf_api,
        [
            {"id": "slow", "type": "test_slow", "params": {"seconds": 30}},
            greet("next", "n", needs=["slow"]),
        ],
    )
    path = f"{WORKFLOWS}/{flow['id']}"
    wf_api.wait_for(path, lambda w: step(w, "slow")["status"] == "running", 20)
    assert wf_api.get(path).json()["status"] == "running"
    cancelled = wf_api.post(f"{path}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert statuses(cancelled.json()) == {"slow": "cancelled", "next": "cancelled"}
    job_id = step(cancelled.json(), "slow")["job_ids"][0]
    job = wf_api.wait_terminal(f"/api/v1/jobs/{job_id}", 20)
    assert job["status"] == "cancelled"
    assert store.jobs.count_documents({"workflow_id": flow["id"]}) == 1
    # cancelling again changes nothing
    assert wf_api.post(f"{path}/cancel").json()["status"] == "cancelled"


def test_retry_runs_the_failed_and_skipped_steps_again_and_keeps_the_succeeded_ones(
    wf_api: Api, store: JobStore, tmp_path: Path
) -> None:
    gate = tmp_path / "open"
    steps = [
        greet("first", "f"),
        {"id": "gate", "type": "test_gate", "params": {"unless": str(gate)}, "needs": ["first"]},
        inputs_of("last", ["first", "gate"]),
    ]
    failed = run(wf_api, steps)
    assert failed["status"] == "failed" and step(failed, "last")["status"] == "skipped"
    path = f"{WORKFLOWS}/{failed['id']}"
    gate.touch()
    again = wf_api.post(f"{path}/retry")
    assert again.status_code == 202, again.text
    done = wait_ended(wf_api, failed["id"])
    assert done["status"] == "succeeded" and done["error"] is None
    assert step(done, "first")["job_ids"] == step(failed, "first")["job_ids"]
    assert step(done, "gate")["job_ids"] != step(failed, "gate")["job_ids"]
    assert step(done, "gate")["run"] == 1
    assert step(done, "last")["result"]["inputs"]["gate"] == {"passed": True}
    old_gate_job = store.get(step(failed, "gate")["job_ids"][0])
    assert old_gate_job["status"] == "failed"  # the first run's job is kept as it was
    assert store.jobs.count_documents({"workflow_id": failed["id"], "step": "first"}) == 1
    refused = wf_api.post(f"{path}/retry")
    assert refused.status_code == 409
    assert refused.headers["Content-Type"] == "application/problem+json"


@pytest.mark.timeout(300)
def test_a_thousand_item_fan_out_completes_with_nothing_lost_or_doubled(
    wf_api: Api, store: JobStore
) -> None:
    flow = submit(
        wf_api,
        [
            {"id": "list", "type": "test_items", "params": {"count": 1000}},
            {"id": "each", "type": "test_named", "needs": ["list"], "for_each": "list"},
            {"id": "count", "type": "test_inputs", "needs": ["each"]},
        ],
    )
    # Look once a second: each look reads 1,000 job ids and results.
    done = wait_until(lambda: ended(wf_api, flow["id"]), 280, "the workflow", every=1.0)
    assert done["status"] == "succeeded", done["error"]
    each = step(done, "each")
    assert each["result"] == [{"name": f"n{i}"} for i in range(1000)]
    jobs = list(store.jobs.find({"workflow_id": done["id"], "step": "each"}))
    assert len(jobs) == 1000 and sorted(job["item"] for job in jobs) == list(range(1000))
    assert {job["attempts"] for job in jobs} == {1}
    assert store.jobs.count_documents({"workflow_id": done["id"]}) == 1002


def test_the_fasta_example_splits_aligns_each_record_and_ranks_them_by_score(
    wf_api: Api,
) -> None:
    fasta = ">exact\nGATTACA\n>close\nGATTACC\n>far\nCCCCCCC\n"
    done = run(
        wf_api,
        [
            {"id": "split", "type": "split_fasta", "params": {"fasta": fasta}},
            {
                "id": "align",
                "type": "align",
                "params": {"seq_b": "GATTACA"},
                "needs": ["split"],
                "for_each": "split",
            },
            {"id": "rank", "type": "rank_alignments", "needs": ["split", "align"]},
        ],
        timeout=60,
    )
    assert done["status"] == "succeeded", done["error"]
    ranking = step(done, "rank")["result"]["ranking"]
    assert [r["name"] for r in ranking] == ["exact", "close", "far"]
    assert ranking[0]["score"] == 7.0


def test_a_step_past_its_hard_time_limit_fails_with_reason_timeout_and_skips_what_needs_it(
    wf_api: Api,
) -> None:
    done = run(
        wf_api,
        [
            {"id": "hang", "type": "test_hang", "params": {"seconds": 30}},
            greet("after", "a", needs=["hang"]),
        ],
        timeout=40,
    )
    assert done["status"] == "failed"
    assert step(done, "hang")["status"] == "failed"
    assert step(done, "hang")["error"]["reason"] == "timeout"
    assert step(done, "after")["status"] == "skipped"
