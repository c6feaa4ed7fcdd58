"""The client commands of ``jobline`` against a live stack."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import click
import pytest
from click.testing import CliRunner

from jobline.cli import main
from jobline.clients.cli import parse_params
from jobline.local import servers as local
from tests.conftest import Api


def run(api: Api, *args: str) -> Any:
    """Run a jobline command against ``api`` in this process; returns click's result."""
    return CliRunner().invoke(main, [*args, "--url", api.base], catch_exceptions=False)


def test_submit_with_wait_prints_the_result_and_exits_0_on_success(live_api: Api) -> None:
    argv = local.jobline_argv("submit", "bmi", "name=Ada", "weight=55", "height=170", "--wait")
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "JOBLINE_URL": live_api.base},
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert job["result"] == {"bmi": 19.03, "category": "normal"}
    assert "100%" in done.stderr  # the progress bar reached the end


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("JOBLINE_")}


def test_submit_with_wait_exits_1_when_the_job_fails(live_api: Api) -> None:
    result = run(live_api, "submit", "test_broken", "--wait")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "failed"


def test_submit_with_wait_exits_124_at_its_timeout_while_the_job_reports_progress(
    live_api: Api,
) -> None:
    # Long enough to start within the timeout and still run long after it.
    result = run(live_api, "submit", "sleep", "seconds=30", "steps=75", "--wait", "--timeout=6")
    job_id = result.stderr.split("job ", 1)[1].split()[0]
    try:
        assert result.exit_code == 124, result.output
        assert "still running" in result.stderr
        assert "running" in result.stderr.splitlines()[-2]  # progress was shown meanwhile
        assert live_api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    finally:
        live_api.post(f"/api/v1/jobs/{job_id}/cancel")


def test_client_commands_say_which_api_they_use(idle_api: Api) -> None:
    result = run(idle_api, "list")
    assert result.exit_code == 0, result.output
    assert f"jobline: API {idle_api.base} (--url or JOBLINE_URL)" in result.stderr


def test_submit_without_wait_prints_the_queued_job(idle_api: Api) -> None:
    result = run(idle_api, "submit", "sleep", "seconds=2", "steps=4")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "queued"
    assert job["params"] == {"seconds": 2, "steps": 4}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["bmi", "name=Ada", "weight=heavy", "height=170"], "params.weight"),
        (["bmi", "name=Ada"], "params.height"),
        (["nothing_like_it"], "type"),
    ],
)
def test_a_refused_submission_exits_1_naming_the_bad_field(
    idle_api: Api, args: list[str], named: str
) -> None:
    result = run(idle_api, "submit", *args)
    assert result.exit_code == 1
    assert "422" in result.stderr and named in result.stderr


def test_status_list_cancel_and_retry(idle_api: Api) -> None:
    job = json.loads(run(idle_api, "submit", "bmi", "name=Ada", "weight=55", "height=170").stdout)
    status = run(idle_api, "status", job["id"])
    assert json.loads(status.stdout)["id"] == job["id"]
    listed = run(idle_api, "list", "--status", "queued")
    assert job["id"] in listed.stdout and "queued" in listed.stdout
    assert json.loads(run(idle_api, "cancel", job["id"]).stdout)["status"] == "cancelled"
    assert job["id"] not in run(idle_api, "list", "--status", "queued").stdout
    page = json.loads(run(idle_api, "list", "--type", "bmi", "--json").stdout)
    assert [j["status"] for j in page["items"]] == ["cancelled"]
    assert json.loads(run(idle_api, "retry", job["id"]).stdout)["status"] == "queued"


def test_an_unknown_job_exits_1_with_the_problem(idle_api: Api) -> None:
    result = run(idle_api, "status", "0193a5a8-0000-7000-8000-000000000000")
    assert result.exit_code == 1
    assert "404" in result.stderr


def test_an_unreachable_api_exits_1_saying_so() -> None:
    result = CliRunner().invoke(main, ["list", "--url", f"http://127.0.0.1:{local.free_port()}"])
    assert result.exit_code == 1
    assert "127.0.0.1" in result.stderr


@pytest.mark.parametrize(
    ("pairs", "params"),
    [
        (("weight=55",), {"weight": 55}),
        (("height=170.5",), {"height": 170.5}),
        (("name=Ada",), {"name": "Ada"}),
        (('name="55"',), {"name": "55"}),
        (("flag=true", "none=null"), {"flag": True, "none": None}),
        (("seq=[1, 2]",), {"seq": [1, 2]}),
        (('opts={"a": 1}',), {"opts": {"a": 1}}),
        (("expr=a=b",), {"expr": "a=b"}),
        (("empty=",), {"empty": ""}),
    ],
)
def test_params_are_json_where_they_parse_and_strings_otherwise(
    pairs: tuple[str, ...], params: dict[str, Any]
) -> None:
    assert parse_params(pairs) == params


@pytest.mark.parametrize("pair", ["weight", "=55", ""])
def test_params_without_a_key_are_refused(pair: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_params((pair,))
