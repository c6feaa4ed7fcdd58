"""Flower, the operators' view, asks for credentials."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from jobline.core.settings import Settings
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, settings_env

LOGIN = ("ops", "flower-test-password")


def test_flower_refuses_requests_without_credentials_and_accepts_them(
    settings: Settings, tmp_path: Path
) -> None:
    port = local.free_port()
    env = settings_env(settings) | {"JOBLINE_FLOWER_BASIC_AUTH": ":".join(LOGIN)}
    log = tmp_path / "flower.log"
    flower = local.Process("flower", local.jobline_argv("flower", f"--port={port}"), env, log)
    flower.start()
    try:
        local.wait_until(lambda: local.port_open(port), 60, "Flower", flower)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while (anonymous := requests.get(url, timeout=5)).status_code not in (200, 401):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert requests.get(url + "api/workers", timeout=5).status_code == 401
        assert requests.get(url, auth=LOGIN, timeout=5).status_code == 200
        argv = Path(f"/proc/{flower.pid}/cmdline").read_bytes().decode()
        assert LOGIN[1] not in argv  # not visible in the process list
    finally:
        flower.stop()
    assert LOGIN[1] not in log.read_text()


def test_flower_will_not_start_without_credentials(settings: Settings) -> None:
    result = subprocess.run(
        local.jobline_argv("flower", f"--port={local.free_port()}"),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JOBLINE_FLOWER_BASIC_AUTH" in result.stderr


def test_flower_turns_on_the_task_events_workers_leave_off_and_sees_jobs_run(
    settings: Settings, live_api: Api, store: JobStore, tmp_path: Path
) -> None:
    # Workers send no task events of their own accord (they cost every job two
    # broker publishes); Flower asks them to, and then shows each task.
    port = local.free_port()
    env = settings_env(settings) | {"JOBLINE_FLOWER_BASIC_AUTH": ":".join(LOGIN)}
    flower = local.Process(
        "flower", local.jobline_argv("flower", f"--port={port}"), env, tmp_path / "flower.log"
    )
    flower.start()
    try:
        local.wait_until(lambda: local.port_open(port), 60, "Flower", flower)
        deadline = time.monotonic() + 45
        seen: dict[str, dict[str, str]] = {}
        jobs: dict[str, str] = {}  # task id: job id, of every job run while Flower starts
        whole: list[str] = []
        while time.monotonic() < deadline and not whole:
            job = live_api.submit_and_wait("/api/v1/jobs", {"type": "noop", "params": {}})
            jobs[store.get(job["id"])["task_id"]] = job["id"]
            time.sleep(1)  # events reach monitors a fraction of a second late
            tasks = requests.get(f"http://127.0.0.1:{port}/api/tasks", auth=LOGIN, timeout=5)
            if tasks.status_code == 200:
                seen = tasks.json()
                # Seen whole: received (with its arguments) once events were on, then done.
                whole = [t for t in jobs if seen.get(t, {}).get("state") == "SUCCESS"
                         and seen[t].get("args")]  # fmt: skip
        assert whole, seen
        # Each task names its job; the record it carries is not spelt out.
        assert seen[whole[0]]["args"] == repr([jobs[whole[0]]])
        assert seen[whole[0]]["kwargs"] == "{'record': {...}}"
    finally:
        flower.stop()
        make_celery(settings).control.disable_events()  # the shared worker, as before
