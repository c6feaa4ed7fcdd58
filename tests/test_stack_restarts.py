"""`jobline up` restarting what crashes: a worker, redis-server, SecantusDB killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from jobline.local import servers as local
from tests.support import wait_until
from tests.test_stack import Up, alive, descendants

ADA = {"name": "Ada", "weight": 55, "height": 170}


class Printed:
    """What `jobline up` printed so far, read without waiting for it to end."""

    def __init__(self, up: Up) -> None:
        assert up.process.stdout is not None
        self.fd = up.process.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.text = ""

    def read(self) -> str:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.text
            if not chunk:
                return self.text
            self.text += chunk.decode(errors="replace")


class WatchedUp(Up):
    """`jobline up` whose terminal output a test reads as it goes."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        super().__init__(data_dir, *options)
        self.data_dir = data_dir
        self.printed = Printed(self)

    def server_port(self, url_key: str) -> int:
        url = json.loads((self.data_dir / "stack.json").read_text())[url_key]
        return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedUp]:
    """One `jobline up` for the module, stopped with SIGTERM after it."""
    stack = WatchedUp(tmp_path_factory.mktemp("restarts") / "data")
    try:
        yield stack
        stack.terminate()
    finally:
        stack.kill()


def child_pid(parent: int, marker: str) -> int | None:
    """The live child of ``parent`` whose command line holds ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and marker in cmdline:
            return int(entry.name)
    return None


def restarted(up: Up, marker: str, before: int) -> int:
    """The pid of the child that replaced ``before``, once there is one."""

    def replacement() -> int | None:
        pid = child_pid(up.process.pid, marker)
        return pid if pid not in (None, before) else None

    return int(wait_until(replacement, 60, f"{marker} to be started again", every=0.2))


def calculate(up: Up) -> tuple[str, dict[str, Any]]:
    """Submit a calculation, riding out a 503 as a client would; its URL and its ending."""

    def accepted() -> requests.Response | None:
        try:
            posted = requests.post(f"{up.base}/api/v1/calculations", json=ADA, timeout=10)
        except requests.ConnectionError:
            return None
        assert posted.status_code in (202, 503), posted.text
        return posted if posted.status_code == 202 else None

    location = f"{up.base}{wait_until(accepted, 60, 'a 202', every=0.5).headers['Location']}"

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = requests.get(location, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return location, wait_until(ended, 60, "the calculation to end", every=0.2)


@pytest.mark.timeout(300)
def test_a_worker_killed_with_sigkill_is_started_again_and_runs_the_next_job(up: WatchedUp) -> None:
    marker = "--hostname=worker1@"
    before = wait_until(lambda: child_pid(up.process.pid, marker), 30, "worker-1")
    pool = descendants(before)
    os.kill(before, signal.SIGKILL)
    assert requests.get(f"{up.base}/healthz", timeout=10).status_code == 200
    after = restarted(up, marker, before)
    assert [pid for pid in pool if alive(pid)] == []  # its pool went with it
    _, job = calculate(up)
    assert job["status"] == "succeeded"
    assert job["result"] == {"bmi": 19.03, "category": "normal"}
    output = up.printed.read()
    assert "worker-1 was killed by SIGKILL after " in output
    assert "restarting it in 1s" in output
    assert f"worker-1 restarted (pid {after})" in output
    assert up.process.poll() is None


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("name", "marker", "url_key"),
    [
        ("redis", "redis-server", "redis_url"),
        ("mongodb", "jobline.local.embedded_mongo", "mongo_url"),
    ],
)
def test_an_embedded_server_killed_with_sigkill_comes_back_on_its_port_with_its_data(
    up: WatchedUp, name: str, marker: str, url_key: str
) -> None:
    port = up.server_port(url_key)
    earlier, _ = calculate(up)
    broker = redis.Redis(port=port) if name == "redis" else None
    if broker is not None:
        broker.set("test:kept-across-a-crash", "yes")
    # Writes reach the files within a second: Redis's AOF syncs every second, and like
    # mongod's journal (100 ms), SecantusDB's loses its last moment of writes to a SIGKILL.
    time.sleep(1.5)
    before = wait_until(lambda: child_pid(up.process.pid, marker), 30, name)
    os.kill(before, signal.SIGKILL)
    restarted(up, marker, before)
    wait_until(lambda: local.port_open(port), 60, f"{name} on port {port} again")
    if broker is not None:
        assert broker.get("test:kept-across-a-crash") == b"yes"
    kept = wait_until(lambda: (r := requests.get(earlier, timeout=30)).ok and r, 60, "the job")
    assert kept.json()["status"] == "succeeded"
    _, job = calculate(up)
    assert job["status"] == "succeeded"
    assert f"{name} was killed by SIGKILL after " in up.printed.read()
    assert up.process.poll() is None


@pytest.mark.timeout(300)
def test_a_worker_past_its_restart_limit_stops_the_stack_naming_it(tmp_path: Path) -> None:
    stack = WatchedUp(tmp_path / "data", "--restart-limit=2", "--restart-within=600")
    try:
        marker = "--hostname=worker1@"
        first = wait_until(lambda: child_pid(stack.process.pid, marker), 30, "worker-1")
        os.kill(first, signal.SIGKILL)
        second = restarted(stack, marker, first)
        everything = descendants(stack.process.pid)
        os.kill(second, signal.SIGKILL)
        stack.process.wait(timeout=120)
        output = stack.printed.read()
        assert stack.process.returncode == 1, output
        assert (
            "worker-1 exited 2 times within 600s (the last time it was killed by SIGKILL), "
            "so it was not restarted again: see "
        ) in output
        assert "everything was stopped" in output
        assert [pid for pid in everything if alive(pid)] == []
    finally:
        stack.kill()
