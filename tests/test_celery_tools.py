"""Celery's own tools against jobline's workers: the plain CLI, ``celery -A jobline``, Flower."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from flower.utils.broker import Broker as FlowerBroker

from jobline.core.settings import Settings
from jobline.engine import queue, sweeper
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, idle_settings, settings_env
from tests.support import make_pipeline

CELERY = str(Path(sys.executable).parent / "celery")
LOGIN = ("ops", "flower-test-password")


def celery(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``celery`` command as an operator would, from a directory of its own."""
    return subprocess.run(
        [CELERY, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def flower(env: dict[str, str], log: Path, *args: str) -> tuple[local.Process, str]:
    """``celery [args] flower`` on a free port, behind Flower's own basic auth."""
    port = local.free_port()
    argv = [CELERY, *args, "flower", f"--port={port}", "--address=127.0.0.1"]
    process = local.Process("flower", argv, env | {"FLOWER_BASIC_AUTH": ":".join(LOGIN)}, log)
    process.start()
    local.wait_until(lambda: local.port_open(port), 60, "Flower", process)
    return process, f"http://127.0.0.1:{port}"


def poll(url: str, until: Any, timeout: float = 30) -> Any:
    """GET ``url`` from Flower until ``until(body)`` holds; the last body either way."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        answer = requests.get(url, auth=LOGIN, timeout=10)
        if answer.status_code == 200:
            body = answer.json()
            if until(body):
                break
        time.sleep(0.5)
    return body


@pytest.mark.parametrize("command", [["inspect", "ping"], ["status"]])
def test_the_plain_celery_command_reaches_jobline_s_workers(
    settings: Settings, worker: local.Process, command: list[str], tmp_path: Path
) -> None:
    result = celery(
        settings_env(settings), "--broker", settings.broker, *command, "--timeout=5", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "main@" in result.stdout


def test_celery_dash_a_jobline_shows_the_job_a_worker_is_running(
    settings: Settings, live_api: Api, store: JobStore, tmp_path: Path
) -> None:
    response = live_api.post("/api/v1/jobs", json={"type": "sleep", "params": {"seconds": 30}})
    assert response.status_code == 202
    location = response.headers["Location"]
    job = live_api.wait_for(location, lambda j: j["status"] == "running")
    try:
        result = celery(
            # Celery waits its whole --timeout for replies: long enough for a busy worker.
            settings_env(settings),
            "-A",
            "jobline",
            "inspect",
            "active",
            "--json",
            "--timeout=5",
            cwd=tmp_path,
        )
    finally:
        live_api.post(f"{location}/cancel")
    assert result.returncode == 0, result.stdout + result.stderr
    active = [task for tasks in json.loads(result.stdout).values() for task in tasks]
    running = [task for task in active if task["args"] == [job["id"]]]
    assert [task["id"] for task in running] == [store.get(job["id"])["task_id"]]
    assert running[0]["name"] == queue.RUN_TASK


def test_the_celery_app_loads_no_job_module_and_opens_no_connection(tmp_path: Path) -> None:
    env = settings_env(Settings(redis_url="redis://127.0.0.1:1/0", job_modules="tests.jobtypes"))
    probe = """
import json, socket, sys
connects = []
real = socket.socket.connect
socket.socket.connect = lambda sock, address: connects.append(str(address)) or real(sock, address)
from celery.app.utils import find_app
app = find_app("jobline")
# The catalogue's own support modules (FileRef) may load; no job type's module may.
job_modules = [m for m in sys.modules if m.startswith(("tests", "jobline.jobs."))
               and m != "jobline.jobs.refs"]
print(json.dumps({"main": app.main, "broker": app.conf.broker_url, "connects": connects,
                  "job_modules": job_modules}))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found == {
        "main": "jobline",
        "broker": "redis://127.0.0.1:1/0",
        "connects": [],
        "job_modules": [],
    }


def test_celery_dash_a_jobline_worker_is_refused_before_it_takes_a_message(
    settings: Settings, idle_api: Api, tmp_path: Path
) -> None:
    idle = idle_settings(settings)
    response = idle_api.post("/api/v1/jobs", json={"type": "noop"})
    assert response.status_code == 202
    result = celery(settings_env(idle), "-A", "jobline", "worker", "--pool=solo", cwd=tmp_path)
    assert result.returncode != 0
    assert "jobline worker" in result.stderr
    assert queue.queue_depth(queue.make_celery(idle), "default") >= 1
    assert idle_api.get(response.headers["Location"]).json()["status"] == "queued"


def test_a_flower_of_its_own_lists_jobline_s_workers_and_their_tasks(
    settings: Settings, live_api: Api, store: JobStore, tmp_path: Path
) -> None:
    process, base = flower(
        settings_env(settings), tmp_path / "flower.log", "--broker", settings.broker
    )
    try:
        workers = poll(
            f"{base}/api/workers?refresh=1", lambda ws: any(w.startswith("main@") for w in ws)
        )
        assert any(name.startswith("main@") for name in workers or {}), workers
        # Flower turns on the workers' task events every few seconds; tasks show from then on.
        deadline = time.monotonic() + 45
        state = None
        while state != "SUCCESS" and time.monotonic() < deadline:
            job = live_api.submit_and_wait("/api/v1/jobs", {"type": "noop"})
            task_id = store.get(job["id"])["task_id"]
            tasks = poll(f"{base}/api/tasks", lambda ts, t=task_id: t in ts, timeout=3) or {}
            state = tasks.get(task_id, {}).get("state")
        assert state == "SUCCESS"
    finally:
        process.stop()


def test_every_priority_counts_in_queue_depth_metrics_and_flower_s_broker_tab(
    settings: Settings, idle_api: Api, tmp_path: Path
) -> None:
    idle = idle_settings(settings)
    app = queue.make_celery(idle)
    before = queue.queue_depth(app, "default")
    priorities = range(10)
    for priority in priorities:
        answer = idle_api.post("/api/v1/jobs", json={"type": "noop", "priority": priority})
        assert answer.status_code == 202
    waiting = before + len(priorities)
    assert queue.queue_depth(app, "default") == waiting
    assert f'jobline_queue_depth{{queue="default"}} {waiting}.0' in idle_api.get("/metrics").text
    process, base = flower(settings_env(idle), tmp_path / "flower.log", "-A", "jobline")
    try:
        lengths = poll(f"{base}/api/queues/length", lambda body: body.get("active_queues"))
    finally:
        process.stop()
    assert {"name": "default", "messages": waiting} in lengths["active_queues"]
    # What the broker tab of a Flower started with only --broker reads: Flower's
    # own broker client with none of jobline's options (no worker here names the
    # queue to such a Flower, so it is asked directly).
    standalone = FlowerBroker(idle.broker)
    assert asyncio.run(standalone.queues(["default"])) == [{"name": "default", "messages": waiting}]


@pytest.mark.parametrize("app_from", ["-A jobline", "--broker alone"])
def test_a_job_whose_message_celery_purged_is_republished_by_the_sweeper(
    settings: Settings, idle_api: Api, store: JobStore, tmp_path: Path, app_from: str
) -> None:
    idle = idle_settings(settings, requeue_after_seconds=0.01)
    app = queue.make_celery(idle)
    response = idle_api.post("/api/v1/jobs", json={"type": "noop", "priority": 7})
    assert response.status_code == 202
    job_id = response.json()["id"]
    purged_task = store.get(job_id)["task_id"]
    how = (
        ["-A", "jobline"]
        if app_from == "-A jobline"
        else ["--broker", idle.broker, "-Q", "default"]
    )
    result = celery(settings_env(idle), *how[:2], "purge", "--force", *how[2:], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert queue.queue_depth(app, "default") == 0
    assert idle_api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    assert sweeper.sweep_once(make_pipeline(idle, store))["republished"] == 1
    assert queue.queue_depth(app, "default") == 1
    assert store.get(job_id)["task_id"] != purged_task
