"""`jobline up` as a user runs it: the whole stack in one command, and nothing left after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from jobline.local import servers as local


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes]) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "jobline up exited early"
        try:
            return requests.get(url, timeout=5)
        except (requests.ConnectionError, requests.Timeout):  # still starting, or a busy machine
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s")


class Up:
    """`jobline up` run as a subprocess, the way a user starts it."""

    def __init__(self, data_dir: Path, *options: str, **environ: str) -> None:
        self.api_port, self.flower_port = local.free_port(), local.free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLINE_")}
        env["JOBLINE_BMI_SECONDS"] = "0.5"
        env.update(environ)
        self.process = subprocess.Popen(
            local.jobline_argv(
                "up", f"--api-port={self.api_port}", f"--flower-port={self.flower_port}",
                f"--data-dir={data_dir}", "--concurrency=1", *options,
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while wait_http(f"{self.base}/readyz", 90, self.process).status_code != 200:
            assert time.monotonic() < deadline, "jobline up never became ready"
            time.sleep(0.3)

    def terminate(self) -> str:
        """SIGTERM, as a service manager stops it; returns what it printed."""
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, output.decode()
        return output.decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.mark.timeout(240)
def test_jobline_up_serves_a_calculation_and_leaves_nothing_behind(tmp_path: Path) -> None:
    up = Up(tmp_path / "data")
    try:
        flower = wait_http(f"http://127.0.0.1:{up.flower_port}/", 30, up.process)
        assert flower.status_code == 401  # Flower asks for the login the banner shows
        assert requests.get(f"{up.base}/api/v1/docs", timeout=5).status_code == 200
        posted = requests.post(
            f"{up.base}/api/v1/calculations",
            json={"name": "Ada", "weight": 55, "height": 170},
            timeout=10,
        )
        assert posted.status_code == 202
        location = f"{up.base}{posted.headers['Location']}"
        job = posted.json()
        deadline = time.monotonic() + 60
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            job = requests.get(location, timeout=5).json()
        assert job["status"] == "succeeded"
        assert job["result"] == {"bmi": 19.03, "category": "normal"}
        # beat runs too: a schedule fires into an ordinary job.
        schedule = requests.post(
            f"{up.base}/api/v1/schedules",
            json={"type": "bmi", "params": {"name": "Bo", "weight": 60, "height": 180},
                  "interval_seconds": 1},
            timeout=10,
        ).json()  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(
            item["schedule_id"] == schedule["id"]
            for item in requests.get(f"{up.base}/api/v1/jobs", timeout=5).json()["items"]
        ):
            assert time.monotonic() < deadline, "the schedule never fired"
            time.sleep(0.3)
        requests.delete(f"{up.base}/api/v1/schedules/{schedule['id']}", timeout=5)
        children = descendants(up.process.pid)
        assert len(children) >= 6  # redis, mongodb, worker (+pool), beat, flower, api
        output = up.terminate()
        assert f"http://127.0.0.1:{up.api_port}/api/v1/docs" in output
        assert "API keys   OFF" in output
        password = output.split("user admin, password ", 1)[1].split(")", 1)[0]
        for log in (tmp_path / "data" / "logs").iterdir():
            assert password not in log.read_text(errors="replace"), log.name
    finally:
        up.kill()
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
    assert (tmp_path / "data" / "redis" / "appendonlydir").exists()

    again = Up(tmp_path / "data")
    try:
        kept = requests.get(f"{again.base}{posted.headers['Location']}", timeout=5)
        assert kept.status_code == 200
        assert kept.json()["result"] == {"bmi": 19.03, "category": "normal"}
        again.terminate()
    finally:
        again.kill()


def newcomer_env() -> dict[str, str]:
    """The environment of a newcomer's shell: no JOBLINE_* variable set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLINE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


def jobline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A jobline command run as a newcomer runs it."""
    return subprocess.run(
        local.jobline_argv(*args), cwd=cwd, env=newcomer_env(), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_commands_beside_jobline_up_find_its_servers_with_no_environment(tmp_path: Path) -> None:
    data_dir = tmp_path / ".jobline"  # the default name, seen from its parent
    up = Up(data_dir, JOBLINE_AUTH="on")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        created = jobline("keys", "create", "--name", "alice", cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        key = created.stdout.split()[-1]
        stack = json.loads((data_dir / "stack.json").read_text())
        assert f"store {stack['mongo_url']} (from the `jobline up` on {data_dir})" in created.stderr
        assert (
            f"broker {stack['redis_url']} (from the `jobline up` on {data_dir})" in created.stderr
        )

        keyed = requests.get(f"{up.base}/api/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert keyed.status_code == 200
        assert requests.get(f"{up.base}/api/v1/jobs", timeout=5).status_code == 401

        # From anywhere else, --data-dir names the stack; client commands find its API too.
        listed = jobline("keys", "list", f"--data-dir={data_dir}", cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        assert any(line.startswith("alice ") for line in listed.stdout.splitlines())
        submitted = jobline("submit", "noop", f"--api-key={key}", f"--data-dir={data_dir}",
                            cwd=elsewhere)  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        assert f"API {up.base} (from the `jobline up` on {data_dir})" in submitted.stderr

        # Celery's own tools, loaded with -A jobline, find the stack's broker too.
        pinged = subprocess.run(
            [str(Path(sys.executable).parent / "celery"), "-A", "jobline", "inspect", "ping",
             "--timeout=5"],
            cwd=tmp_path, env=newcomer_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr
        assert "pong" in pinged.stdout

        # A second stack on the same data dir is refused, and the first one goes on.
        again = jobline("up", f"--api-port={local.free_port()}",
                        f"--flower-port={local.free_port()}", cwd=tmp_path)  # fmt: skip
        assert again.returncode == 1
        assert f"jobline up already runs on {data_dir}" in again.stderr
        assert requests.get(f"{up.base}/readyz", timeout=5).status_code == 200
        up.terminate()
    finally:
        up.kill()
    assert not (data_dir / "stack.json").exists()
