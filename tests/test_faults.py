"""Faults: workers killed or stopped, Redis and MongoDB stopped, crashed and restarted.

Each test gets servers, workers and a sweeper of its module's own, so the
session's shared ones are never disturbed. Nothing accepted may be lost, and
nothing may end twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from jobline.api import create_app
from jobline.core.errors import BrokerUnavailable, StoreUnavailable
from jobline.core.settings import Settings
from jobline.engine import queue, sweeper
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.mongo import connect
from jobline.store.records import new_job, now
from tests.conftest import Api, ServedApp, make_settings, start_worker
from tests.support import (
    journal,
    make_pipeline,
    starts,
    successes_logged,
    ticks,
    wait_all_terminal,
    wait_job,
    wait_stopped_ticking,
    wait_until,
)

pytestmark = pytest.mark.fault

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}
KEYED = {"Idempotency-Key": "refused-while-hung"}


@dataclass
class Server:
    """A local server a test may stop, crash and start again, on the same port and data."""

    starter: Callable[[Path, int | None], tuple[local.Process, str]]
    data_dir: Path
    port: int | None = None
    process: local.Process | None = None
    url: str = ""

    def start(self) -> Server:
        self.process, self.url = self.starter(self.data_dir, self.port)
        self.port = int(self.url.split(":")[2].split("/")[0])
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def crash(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.process is not None:
            self.process.kill_group(signal.SIGKILL)
            self.process.stop()

    def ensure_up(self) -> None:
        if self.process is None or not self.process.alive():
            self.start()

    @contextmanager
    def hung(self) -> Iterator[None]:
        """SIGSTOP: the server keeps its connections open and answers nothing, until SIGCONT."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


class Faults:
    """Redis, MongoDB, the API, a sweeper and workers, all of this module's own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis = Server(local.start_redis, tmp / "redis").start()
        self.mongo = Server(local.start_mongo, tmp / "mongo").start()
        self.settings = make_settings(
            self.redis.url,
            self.mongo.url,
            mongo_db="jobline_faults",
            bmi_seconds=0.5,
            requeue_after_seconds=5,
        )
        self.store = JobStore(self.settings)
        self.store.ensure_indexes()
        self.pipeline = make_pipeline(self.settings, self.store)
        self.served = ServedApp(create_app(self.settings))
        self.api = Api(self.served.base)
        self.workers: list[local.Process] = []
        self._stop_sweeping = threading.Event()
        self._sweeper = threading.Thread(
            target=sweeper.run,
            args=(make_pipeline(self.settings), self.settings.sweep_interval_seconds),
            kwargs={"stop": self._stop_sweeping},
            daemon=True,
        )
        self._sweeper.start()

    def worker(self, name: str, concurrency: int = 2, **overrides: Any) -> local.Process:
        """A `jobline worker` of this module's, ready to take jobs; ``overrides``: its settings."""
        log = self.tmp / "workers" / f"{name}.log"
        settings = self.settings.model_copy(update=overrides)
        process = start_worker(
            settings, log, f"--concurrency={concurrency}", f"--hostname={name}@%h"
        )
        self.workers.append(process)
        return process

    def worker_logs(self) -> str:
        return "".join(w.log.read_text() for w in self.workers if w.log and w.log.exists())

    def queue_depth(self) -> int:
        return queue.queue_depth(self.pipeline.celery, queue.DEFAULT_QUEUE)

    def reset(self) -> None:
        """Servers up, no worker running, no job, workflow or message left from the last test."""
        for process in self.workers:
            process.stop()
        self.workers.clear()
        self.redis.ensure_up()
        self.mongo.ensure_up()
        redis.Redis.from_url(self.redis.url).flushdb()
        self.store.jobs.delete_many({})
        # A workflow left behind would have the sweep release its step's job again.
        for name in ("workflows", "workflow_steps"):
            self.store.db[name].delete_many({})

    def close(self) -> None:
        self._stop_sweeping.set()
        for process in self.workers:
            process.stop()
        self.served.close()
        self._sweeper.join(10)
        self.store.close()
        self.mongo.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    stack = Faults(tmp_path_factory.mktemp("faults"))
    yield stack
    stack.close()


@pytest.fixture
def faults(stack: Faults) -> Faults:
    """The module's servers, running and empty, with no worker yet."""
    stack.reset()
    return stack


def hung_answer_bound(settings: Settings) -> float:
    """How long a submission may wait on a server that answers nothing: a few connect
    timeouts (a try and a retry, or the store's heartbeat and its check), never the
    10 to 20 s it took before they bounded it."""
    return 4 * settings.connect_timeout_seconds + 1.5


# -- workers -----------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_twenty_slow_jobs_all_succeed_once_when_their_worker_is_killed_mid_run(
    faults: Faults, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    doomed = faults.worker("doomed")
    ids = [
        faults.pipeline.submit("test_slow", {"seconds": 1, "journal": str(path)})["_id"]
        for _ in range(20)
    ]
    jobs = faults.store.jobs
    wait_until(
        lambda: (
            jobs.count_documents({"status": "succeeded"}) >= 2
            and jobs.count_documents({"status": "running", "progress": {"$gt": 0.2}}) >= 1
        ),
        60,
        "the worker to be mid-run",
    )
    doomed.kill_group(signal.SIGKILL)
    doomed.stop()
    time.sleep(1)  # a success the killed process had already sent may still land
    cut_short = [job["_id"] for job in jobs.find({"status": "running"})]
    assert cut_short

    faults.worker("heir")
    ended = wait_all_terminal(faults.store, ids, 90)
    assert [job["status"] for job in ended] == ["succeeded"] * 20
    started = starts(path)
    logs = faults.worker_logs()
    for job in ended:
        # attempts tells the truth, and the result is the last attempt's, written once
        if job["_id"] in cut_short:
            # Killed after its claim counted the attempt, perhaps before it began.
            assert job["attempts"] == 2 and started[job["_id"]] in (1, 2)
        else:
            assert job["attempts"] == started[job["_id"]]
        assert job["result"] == {"attempt": job["attempts"]}
        assert successes_logged(logs, job["_id"]) == 1


@pytest.mark.timeout(90)
def test_sigterm_lets_the_running_job_finish_and_leaves_the_rest_to_the_next_worker(
    faults: Faults, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    leaving = faults.worker("leaving", concurrency=1)
    ids = [
        faults.pipeline.submit("test_slow", {"seconds": 2, "journal": str(path)})["_id"]
        for _ in range(3)
    ]
    wait_job(faults.store, ids[0], lambda job: job["progress"] > 0, timeout=30)
    leaving.send(signal.SIGTERM)
    wait_until(lambda: not leaving.alive(), 30, "the worker to shut down")
    assert faults.store.get(ids[0])["status"] == "succeeded"
    assert [faults.store.get(i)["status"] for i in ids[1:]] == ["queued", "queued"]

    faults.worker("arriving", concurrency=1)
    ended = wait_all_terminal(faults.store, ids, 30)
    assert [(job["status"], job["attempts"]) for job in ended] == [("succeeded", 1)] * 3
    assert starts(path) == {job_id: 1 for job_id in ids}


@pytest.mark.timeout(90)
def test_a_job_cancelled_while_queued_never_runs_even_across_a_worker_restart(
    faults: Faults, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    before = faults.worker("before", concurrency=1)
    # Long enough to outlast the cancel: the victim must still be queued behind it.
    blocker = faults.pipeline.submit("test_slow", {"seconds": 5, "journal": str(path)})["_id"]
    victim = faults.pipeline.submit("test_slow", {"seconds": 0.2, "journal": str(path)})["_id"]
    wait_job(faults.store, blocker, lambda job: job["status"] == "running", timeout=30)
    assert faults.pipeline.cancel(victim)["status"] == "cancelled"
    before.stop()  # SIGTERM: the blocker finishes, the victim's message stays in Redis

    faults.worker("after", concurrency=1)
    last = faults.pipeline.submit("test_slow", {"seconds": 0.2, "journal": str(path)})["_id"]
    assert wait_job(faults.store, last)["status"] == "succeeded"
    wait_until(lambda: faults.queue_depth() == 0, 10, "the queue to drain")
    job = faults.store.get(victim)
    assert (job["status"], job["attempts"], job["started_at"]) == ("cancelled", 0, None)
    assert victim not in starts(path)
    assert faults.store.get(blocker)["status"] == "succeeded"


@pytest.mark.timeout(60)
def test_a_pure_job_cancelled_before_its_start_was_written_is_stopped_with_nothing_recorded(
    faults: Faults, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    faults.worker("pure", concurrency=1, claim_delay_seconds=3)
    victim = faults.pipeline.submit("test_pure_deaf", {"seconds": 20, "journal": str(path)})
    wait_until(lambda: starts(path)[victim["_id"]], 15, "the pure job to start")
    assert faults.store.get(victim["_id"])["status"] == "queued"  # its start is not written yet
    assert faults.pipeline.cancel(victim["_id"])["status"] == "cancelled"
    # Its start's write finds it cancelled and stops it: the one pool process is free
    # again long before the job's 20 s would have ended.
    after = faults.pipeline.submit("noop", {})["_id"]
    assert wait_job(faults.store, after, timeout=15)["status"] == "succeeded"
    job = faults.store.get(victim["_id"])
    assert (job["status"], job["attempts"], job["started_at"], job["result"]) == (
        "cancelled",
        0,
        None,
        None,
    )
    assert not [w for w in journal(path) if w[0] == "end"]
    assert ticks(path, victim["_id"]) < 25


@pytest.mark.timeout(90)
def test_a_worker_killed_before_a_pure_jobs_start_was_written_leaves_it_queued_to_run_once(
    faults: Faults, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    first = faults.worker("pure-first", concurrency=1, claim_delay_seconds=30)
    job_id = faults.pipeline.submit("test_pure_deaf", {"seconds": 3, "journal": str(path)})["_id"]
    wait_until(lambda: starts(path)[job_id], 15, "the pure job to start")
    first.kill_group(signal.SIGKILL)
    assert faults.store.get(job_id)["status"] == "queued"
    faults.worker("pure-second", concurrency=1)
    # The sweeper publishes it again once nobody claimed it for requeue_after_seconds.
    seen = wait_job(faults.store, job_id, lambda j: j["status"] == "running", timeout=45)
    assert seen["attempts"] == 1 and seen["started_at"] is not None
    ended = wait_job(faults.store, job_id, timeout=30)
    # attempts counts the starts the store saw; the journal, every run.
    assert (ended["status"], ended["attempts"], ended["result"]) == ("succeeded", 1, {"attempt": 1})
    assert starts(path)[job_id] == 2


@pytest.mark.timeout(60)
def test_a_pure_job_killed_by_its_hard_time_limit_is_claimed_first_and_recorded_failed(
    faults: Faults,
) -> None:
    # A claim delay far past the type's limits: the claim comes at half its soft limit.
    faults.worker("pure-hung", concurrency=1, claim_delay_seconds=30)
    job_id = faults.pipeline.submit("test_pure_hang", {"seconds": 60})["_id"]
    ended = wait_job(faults.store, job_id, timeout=20)
    outcome = (ended["status"], ended["attempts"], ended["error"]["reason"])
    assert outcome == ("failed", 1, "timeout")


@pytest.mark.timeout(60)
def test_short_pure_jobs_cost_one_update_each_and_longer_ones_show_running(
    faults: Faults, tmp_path: Path
) -> None:
    faults.worker("pure-counted", concurrency=2)
    warm = faults.pipeline.submit("noop", {})["_id"]
    wait_job(faults.store, warm)
    server = faults.store.db.client.admin

    def updates() -> int:
        return int(server.command("serverStatus")["opcounters"]["update"])

    before = updates()
    ids = [faults.pipeline.submit("noop", {})["_id"] for _ in range(20)]
    done = [wait_job(faults.store, job_id) for job_id in ids]
    assert updates() - before == 20  # start and end of each in one write
    assert {(j["status"], j["attempts"]) for j in done} == {("succeeded", 1)}
    assert all(j["started_at"] <= j["finished_at"] for j in done)
    path = tmp_path / "journal"
    longer = faults.pipeline.submit("test_pure_deaf", {"seconds": 3, "journal": str(path)})["_id"]
    running = wait_job(faults.store, longer, lambda j: j["status"] == "running", timeout=15)
    assert running["attempts"] == 1 and not [w for w in journal(path) if w[0] == "end"]
    assert wait_job(faults.store, longer)["status"] == "succeeded"


@pytest.mark.timeout(60)
def test_a_retrying_job_whose_retry_message_was_lost_is_republished_by_the_sweeper(
    faults: Faults,
) -> None:
    faults.worker("retrier", concurrency=1)
    # A first attempt that failed and scheduled its retry, whose message never arrived.
    job = faults.store.insert(new_job("test_slow", {"seconds": 0.1}))
    claimed = faults.store.claim(job["_id"])
    assert claimed is not None
    error = {"reason": "retrying", "type": "TransientError", "message": "first try failed"}
    assert faults.store.retry_later(job["_id"], claimed["attempts"], error, now())
    assert faults.queue_depth() == 0
    ended = wait_job(faults.store, job["_id"], timeout=45)
    assert (ended["status"], ended["attempts"], ended["result"]) == ("succeeded", 2, {"attempt": 2})


# -- Redis -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_with_redis_down_a_submission_gets_503_and_nothing_is_stored_then_all_accepted_complete(
    faults: Faults, tmp_path: Path
) -> None:
    faults.worker("steady")
    accepted = [faults.api.post(CALCS, json=ADA) for _ in range(2)]
    path = tmp_path / "journal"
    deaf = faults.pipeline.submit("test_deaf", {"seconds": 60, "journal": str(path)})["_id"]
    wait_until(lambda: ticks(path, deaf) >= 1, 30, "the deaf job to run")
    faults.redis.stop()

    refused = faults.api.post(CALCS, json=ADA)
    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    assert faults.store.jobs.count_documents({}) == 3
    # A cancel cannot broadcast its revoke, but answers, and the job still stops.
    assert faults.pipeline.cancel(deaf)["status"] == "cancelled"
    wait_stopped_ticking(path, deaf, timeout=20)

    faults.redis.start()
    accepted += [faults.api.post(CALCS, json=ADA) for _ in range(2)]
    assert [r.status_code for r in accepted] == [202] * 4
    ended = wait_all_terminal(faults.store, [r.json()["id"] for r in accepted], 60)
    assert [job["status"] for job in ended] == ["succeeded"] * 4
    assert faults.store.jobs.count_documents({}) == 5
    assert faults.store.get(deaf)["status"] == "cancelled"


@pytest.mark.timeout(120)
def test_with_redis_hung_a_submission_gets_503_within_its_timeouts_and_nothing_is_stored(
    faults: Faults,
) -> None:
    faults.worker("steady")
    first = faults.api.post(CALCS, json=ADA)
    assert first.status_code == 202
    wait_job(faults.store, first.json()["id"], lambda job: job["status"] == "succeeded")

    with faults.redis.hung():
        started = time.monotonic()
        refused = faults.api.post(CALCS, json=ADA, timeout=60)
        waited = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.json()["title"] == "Broker unavailable"
        assert waited < hung_answer_bound(faults.settings), f"answered after {waited:.1f}s"
        # Taken back, as with Redis down; MongoDB still answers the list.
        assert faults.store.jobs.count_documents({}) == 1
        listed = faults.api.get(CALCS)
        assert [job["id"] for job in listed.json()["items"]] == [first.json()["id"]]

    after = faults.api.post(CALCS, json=ADA)
    assert after.status_code == 202
    ended = wait_job(faults.store, after.json()["id"], lambda job: job["status"] == "succeeded")
    assert ended["attempts"] == 1


@pytest.mark.timeout(120)
def test_with_redis_hung_one_thread_at_a_time_waits_on_it_and_the_others_are_refused_at_once(
    faults: Faults,
) -> None:
    # The API's threads publish through one process's shared round trips.
    app = queue.make_celery(faults.settings, answers_clients=True)
    noop = faults.pipeline.catalogue.get("noop")
    queue.publish(app, new_job("noop", {}), noop)  # its connection is in the pool
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    refused: set[str] = set()

    def send(name: str) -> None:
        started[name] = time.monotonic()
        try:
            queue.publish(app, new_job("noop", {}), noop)
        except BrokerUnavailable:
            refused.add(name)
        ended[name] = time.monotonic()

    def run(name: str) -> threading.Thread:
        thread = threading.Thread(target=send, args=(name,))
        thread.start()
        return thread

    queued = [f"queued-{i}" for i in range(5)]
    with faults.redis.hung():
        first = run("first")
        time.sleep(0.5)  # its message waits on the hung broker; these queue behind it
        threads = [run(name) for name in queued]
        for thread in [first, *threads]:
            thread.join(60)
        # Then another tries the broker, and one sent meanwhile does not wait for it.
        probe = run("probe")
        time.sleep(0.5)
        run("meanwhile").join(10)
        assert probe.is_alive()  # still waiting on the hung broker
        probe.join(60)
    assert refused == {"first", *queued, "probe", "meanwhile"}
    timeout = faults.settings.connect_timeout_seconds
    # Refused with the first, not after a try of their own and its timeout.
    waited_more = max(ended[name] for name in queued) - ended["first"]
    assert waited_more < timeout / 2, f"{waited_more:.2f}s later"
    assert ended["meanwhile"] - started["meanwhile"] < timeout / 2
    # The broker back, the next message goes.
    queue.publish(app, new_job("noop", {}), noop)


@pytest.mark.timeout(120)
def test_jobs_accepted_before_a_redis_crash_all_complete_after_it_restarts_from_its_aof(
    faults: Faults,
) -> None:
    faults.worker("survivor")
    ids = [faults.pipeline.submit("bmi", ADA)["_id"] for _ in range(20)]
    wait_until(
        lambda: faults.store.jobs.count_documents({"status": "succeeded"}) >= 2,
        30,
        "the first jobs to finish",
    )
    # These last ones may still be in the second that AOF has not synced yet.
    ids += [faults.pipeline.submit("bmi", ADA)["_id"] for _ in range(10)]
    faults.redis.crash()
    faults.redis.start()
    ended = wait_all_terminal(faults.store, ids, 90)
    assert [job["status"] for job in ended] == ["succeeded"] * 30
    logs = faults.worker_logs()
    assert all(successes_logged(logs, job_id) == 1 for job_id in ids)


# -- MongoDB ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_what_was_accepted_just_before_a_mongodb_crash_is_all_there_after_it_restarts(
    faults: Faults,
) -> None:
    # No worker: nothing changes the records after their answers. Without the journal
    # the embedded server lost every write of its last tens of milliseconds here.
    jobs = [faults.api.post(CALCS, json=ADA) for _ in range(10)]
    assert [r.status_code for r in jobs] == [202] * 10
    batch = faults.api.post("/api/v1/jobs:batch", json={"jobs": [{"type": "noop"}] * 5})
    assert batch.json()["accepted"] == 5, batch.text
    steps = [{"id": "only", "type": "noop", "params": {}}]
    flow = faults.api.post("/api/v1/workflows", json={"steps": steps})
    assert flow.status_code == 202, flow.text
    faults.mongo.crash()
    faults.mongo.start()
    ids = [r.json()["id"] for r in jobs] + [r["id"] for r in batch.json()["results"]]
    ids += [step_job for step in flow.json()["steps"] for step_job in step["job_ids"]]
    wait_until(lambda: faults.api.get(f"/api/v1/jobs/{ids[0]}").status_code == 200, 30, "MongoDB")
    assert [faults.api.get(f"/api/v1/jobs/{job_id}").status_code for job_id in ids] == [200] * 16
    assert faults.api.get(f"/api/v1/workflows/{flow.json()['id']}").status_code == 200


@pytest.mark.timeout(120)
def test_with_mongodb_hung_a_submission_gets_503_within_its_timeouts_and_nothing_is_published(
    faults: Faults,
) -> None:
    # No worker: the broker's queue shows exactly what was published.
    first = faults.api.post(CALCS, json=ADA)
    assert first.status_code == 202
    assert faults.queue_depth() == 1

    # Twice: the second hang begins just after the client has found the server again,
    # when a heartbeat of MongoDB's default would not look again for 10 s.
    found = f"/api/v1/jobs/{first.json()['id']}"
    for hang in range(2):
        with faults.mongo.hung():
            started = time.monotonic()
            refused = faults.api.post(CALCS, json=ADA, headers=KEYED, timeout=60)
            waited = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert refused.json()["title"] == "Job store unavailable"
            assert not refused.json()["detail"].split(": ")[-1].startswith("_"), refused.text
            assert int(refused.headers["Retry-After"]) > 0
            assert waited < hung_answer_bound(faults.settings), (
                f"hang {hang + 1} answered after {waited:.1f}s"
            )
            assert faults.queue_depth() == 1
        wait_until(lambda: faults.api.get(found).status_code == 200, 30, "MongoDB found again")

    faults.worker("patient", concurrency=1)
    # The refused insert may still land once the server wakes; retried under its key,
    # the request gets that job (200) or a new one (202), never a second one.
    again = faults.api.post(CALCS, json=ADA, headers=KEYED)
    assert again.status_code in (200, 202), again.text
    assert faults.store.jobs.count_documents({"idempotency_key": KEYED["Idempotency-Key"]}) == 1
    ids = [first.json()["id"], again.json()["id"]]
    ended = wait_all_terminal(faults.store, ids, 60)
    assert [job["status"] for job in ended] == ["succeeded"] * 2


@pytest.mark.timeout(120)
def test_with_mongodb_hung_inserts_queued_behind_a_refused_one_are_refused_with_it(
    faults: Faults,
) -> None:
    # The API's threads insert through one process's group commit.
    store = JobStore(faults.settings)
    store.insert(new_job("noop", {}))  # the server is known and a connection pooled
    ended: dict[str, float] = {}
    refused: set[str] = set()

    def insert(name: str) -> None:
        try:
            store.insert(new_job("noop", {}))
        except StoreUnavailable:
            refused.add(name)
        ended[name] = time.monotonic()

    names = ["first"] + [f"queued-{i}" for i in range(5)]
    threads = {name: threading.Thread(target=insert, args=(name,)) for name in names}
    try:
        with faults.mongo.hung():
            threads["first"].start()
            time.sleep(0.5)  # its insert waits on the hung server; these queue behind it
            for name in names[1:]:
                threads[name].start()
            for thread in threads.values():
                thread.join(60)
    finally:
        store.close()
    assert refused == set(names)
    waited_more = max(ended[name] for name in names[1:]) - ended["first"]
    assert waited_more < faults.settings.connect_timeout_seconds / 2, f"{waited_more:.2f}s later"


@pytest.mark.timeout(120)
def test_with_mongodb_down_a_submission_gets_503_and_nothing_is_published_then_all_complete(
    faults: Faults, tmp_path: Path
) -> None:
    # No worker yet: the broker's queue shows exactly what was published.
    accepted = [faults.api.post(CALCS, json=ADA) for _ in range(2)]
    assert [r.status_code for r in accepted] == [202] * 2
    assert faults.queue_depth() == 2
    faults.mongo.stop()

    refused = faults.api.post(CALCS, json=ADA)
    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    assert faults.queue_depth() == 2

    faults.mongo.start()
    faults.worker("patient", concurrency=1)
    ids = [r.json()["id"] for r in accepted]
    path = tmp_path / "journal"
    ids += [
        faults.pipeline.submit("test_slow", {"seconds": 2, "journal": str(path)})["_id"]
        for _ in range(2)
    ]
    # A second outage while a job runs and another waits: both ride it out.
    wait_job(faults.store, ids[2], lambda job: job["progress"] > 0, timeout=30)
    faults.mongo.stop()
    time.sleep(2)  # the outage itself
    faults.mongo.start()
    ended = wait_all_terminal(faults.store, ids, 60)
    assert [job["status"] for job in ended] == ["succeeded"] * 4
    assert faults.store.jobs.count_documents({}) == 4


def test_timeouts_the_mongodb_url_names_win_over_the_connect_timeout() -> None:
    # Nothing listens on either port: the client waits out its server selection timeout.
    url = f"mongodb://127.0.0.1:{local.free_port()}/?serverSelectionTimeoutMS=300&appName=mine"
    settings = make_settings(
        f"redis://127.0.0.1:{local.free_port()}/0", url, connect_timeout_seconds=30
    )
    client = connect(settings)
    try:
        options = client.options
        assert options.server_selection_timeout == 0.3
        assert options.pool_options.metadata["application"]["name"] == "mine"
        assert options.pool_options.connect_timeout == 30  # what the URL leaves alone is jobline's
    finally:
        client.close()

    store = JobStore(settings)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            store.find_by_key("any")
    finally:
        store.close()
    waited = time.monotonic() - started
    assert waited < 10, f"gave up after {waited:.1f}s, the connect timeout's 30 s and not the URL's"
