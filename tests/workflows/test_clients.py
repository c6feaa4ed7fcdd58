"""The Python client's workflow methods and `jobline workflow`, against the real API and worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobline.cli import main
from jobline.clients.python import ApiError, Client
from tests.conftest import Api

CHAIN = [
    {"id": "hello", "type": "test_greet", "params": {"name": "ada"}},
    {"id": "echo", "type": "test_inputs", "needs": ["hello"]},
]


def test_the_client_submits_a_workflow_and_waits_for_its_result(wf_api: Api) -> None:
    seen: list[str] = []
    with Client(wf_api.base) as client:
        flow = client.submit_workflow(CHAIN, priority=3)
        done = client.wait_workflow(
            flow["id"], timeout=30, on_change=lambda w: seen.append(w["status"]), interval=0.2
        )
        assert done["status"] == "succeeded" and seen[-1] == "succeeded"
        assert done["steps"][1]["result"] == {"inputs": {"hello": {"text": "hello ada"}}}
        assert client.get_workflow(flow["id"])["id"] == flow["id"]
        assert [w["id"] for w in client.list_workflows(status="succeeded")["items"]] == [flow["id"]]
        with pytest.raises(ApiError) as refused:
            client.retry_workflow(flow["id"])
        assert refused.value.status == 409
        with pytest.raises(ApiError) as invalid:
            client.submit_workflow([{"id": "a", "type": "test_greet"}])
        assert invalid.value.status == 422
        assert ["steps", 0, "params", "name"] in [e["loc"] for e in invalid.value.errors]
        client.delete_workflow(flow["id"])
        with pytest.raises(ApiError):
            client.get_workflow(flow["id"])


def test_jobline_workflow_submit_wait_follows_it_and_exits_by_its_outcome(
    wf_api: Api, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"steps": CHAIN}))
    bad.write_text(json.dumps([{"id": "broken", "type": "test_broken"}]))
    runner = CliRunner()
    ok = runner.invoke(main, ["workflow", "submit", str(good), "--wait", "--url", wf_api.base])
    assert ok.exit_code == 0, ok.output
    shown = json.loads(ok.stdout)
    assert shown["status"] == "succeeded"
    status = runner.invoke(main, ["workflow", "status", shown["id"], "--url", wf_api.base])
    assert status.exit_code == 0 and json.loads(status.stdout)["id"] == shown["id"]
    failed = runner.invoke(main, ["workflow", "submit", str(bad), "--wait", "--url", wf_api.base])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["error"]["step"] == "broken"
    listed = runner.invoke(main, ["workflow", "list", "--url", wf_api.base])
    assert shown["id"] in listed.stdout


def test_jobline_workflow_submit_names_each_bad_place_of_a_refused_workflow(
    wf_api: Api, tmp_path: Path
) -> None:
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps({"steps": [{"id": "a", "type": "test_greet", "needs": ["a"]}]}))
    refused = CliRunner().invoke(main, ["workflow", "submit", str(path), "--url", wf_api.base])
    assert refused.exit_code == 1
    assert "422" in refused.output and "steps.0.needs" in refused.output
