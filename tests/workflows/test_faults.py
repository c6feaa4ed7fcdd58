"""Workers SIGKILLed mid-step, and between recording a step's success and releasing the next.

The module runs its own workers and sweeper on a broker database and a
MongoDB database of its own (the session's servers), so the shared worker is
never killed and never sees these jobs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.engine import sweeper
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.workflows import WorkflowStore
from tests.conftest import Api, ServedApp, start_worker
from tests.support import make_pipeline
from tests.workflows.support import step, submit, wait_ended

pytestmark = pytest.mark.fault


class Isolated:
    """The API, a sweeper and workers on a broker and database nothing else uses."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        broker = settings.redis_url.rsplit("/", 1)[0] + "/6"
        self.settings = Settings(
            **{**settings.model_dump(), "redis_url": broker, "mongo_db": "jobline_wf_faults"}
        )
        self.tmp = tmp
        self.store = JobStore(self.settings)
        self.store.ensure_indexes()
        self.flows = WorkflowStore(self.store.db)
        self.served = ServedApp(create_app(self.settings))
        self.api = Api(self.served.base)
        self.workers: list[local.Process] = []
        self._stop = threading.Event()
        self._sweeper = threading.Thread(
            target=sweeper.run,
            args=(make_pipeline(self.settings), self.settings.sweep_interval_seconds),
            kwargs={"stop": self._stop},
            daemon=True,
        )
        self._sweeper.start()

    def worker(self, name: str) -> local.Process:
        log = self.tmp / f"{name}.log"
        process = start_worker(self.settings, log, "--concurrency=1", f"--hostname={name}@%h")
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            process.stop()
        self.workers.clear()

    def close(self) -> None:
        self._stop.set()
        self.stop_workers()
        self.served.close()
        self._sweeper.join(10)
        self.store.close()


@pytest.fixture(scope="module")
def isolated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Isolated]:
    stack = Isolated(settings, tmp_path_factory.mktemp("workflow-faults"))
    yield stack
    stack.close()


def kill(process: local.Process) -> None:
    process.kill_group(signal.SIGKILL)
    process.stop()


def jobs_of(isolated: Isolated, workflow_id: str) -> list[dict[str, Any]]:
    return list(isolated.store.jobs.find({"workflow_id": workflow_id}))


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_step_delays_the_workflow_but_the_step_runs_once_more_and_it_ends(
    isolated: Isolated,
) -> None:
    doomed = isolated.worker("doomed")
    flow = submit(
        isolated.api,
        [
            # Long enough that the kill, once it is under way, comes mid-step.
            {"id": "slow", "type": "test_slow", "params": {"seconds": 10}},
            {"id": "next", "type": "test_greet", "params": {"name": "n"}, "needs": ["slow"]},
        ],
    )
    job_id = flow["steps"][0]["job_ids"][0]
    deadline = time.monotonic() + 40
    while isolated.store.get(job_id).get("progress", 0) < 0.2:
        assert time.monotonic() < deadline, "the step never got going"
        time.sleep(0.1)
    kill(doomed)
    isolated.worker("heir")
    done = wait_ended(isolated.api, flow["id"], timeout=60)
    assert done["status"] == "succeeded"
    assert step(done, "slow")["job_ids"] == [job_id]
    assert isolated.store.get(job_id)["attempts"] == 2
    assert len(jobs_of(isolated, flow["id"])) == 2  # one job per step, none doubled


@pytest.mark.timeout(120)
def test_a_worker_killed_between_a_step_s_success_and_its_release_is_repaired_by_the_sweeper(
    isolated: Isolated,
) -> None:
    # Only the doomed worker may take the step: any other that ran it would die instead.
    isolated.stop_workers()
    doomed = isolated.worker("doomed")
    flow = submit(
        isolated.api,
        [
            {"id": "dies", "type": "test_dies_after_success"},
            {"id": "next", "type": "test_greet", "params": {"name": "n"}, "needs": ["dies"]},
        ],
    )
    job_id = flow["steps"][0]["job_ids"][0]
    deadline = time.monotonic() + 40
    while doomed.alive():
        assert time.monotonic() < deadline, "the worker did not die"
        time.sleep(0.1)
    doomed.stop()
    stalled = isolated.api.get(f"/api/v1/workflows/{flow['id']}").json()
    assert isolated.store.get(job_id)["status"] == "succeeded"
    assert step(stalled, "dies")["status"] != "succeeded"  # the crash came before the record
    assert step(stalled, "next")["job_ids"] == []
    isolated.worker("heir")
    # A lease without change (6 s here) and a sweep later, the sweeper moves it on.
    done = wait_ended(isolated.api, flow["id"], timeout=60)
    assert done["status"] == "succeeded"
    assert step(done, "dies")["result"] == {"done": True}
    assert len(step(done, "next")["job_ids"]) == 1
    assert isolated.store.get(job_id)["attempts"] == 1
    assert len(jobs_of(isolated, flow["id"])) == 2
