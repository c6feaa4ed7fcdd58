"""The store's floor: what each design's writes for one job cost the embedded server.

Every design compared here records its jobs in the same SecantusDB, a Python
server that serves all clients on one core. So the server's CPU per job, for
the writes a design makes and the indexes those writes maintain, bounds that
design's throughput on this machine whatever its other processes do: a core
of server time a second, divided by the CPU one job's writes take.

Each shape writes ``n`` jobs into a collection of its own, one client, and the
server's CPU is read from /proc around it:

- the seed's design: one ``insert_one`` of the result, no index but ``_id``;
- Celery's MongoDB backend: two upserts by task id (STARTED, then SUCCESS);
- a claim and an outcome with no secondary index: the least a design that
  records a claim before the job runs writes (an insert, two conditional
  updates, inserts shared two at a time as group commit does under load);
- the same with only the status index the sweeper's reads need;
- jobline's own store through ``JobStore`` itself, as the bench runs it (auth
  off), and with auth on (two more indexes: a key's own lists): a job claimed
  before it runs (an insert, a claim, an outcome);
- the same store for a short job of a pure type, whose start is written with
  its result (an insert and one update).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection

from bench.servers import Servers, tree_cpu_seconds
from jobline.store.jobs import JobStore
from jobline.store.records import new_job

DB = "jobline_floor"
# Submissions a shared insert carries under the bench's HTTP load (0.5-0.6 round trips a job).
SHARED_INSERT = 2
STATUS_INDEX = [("status", ASCENDING), ("_id", DESCENDING), ("attempts", ASCENDING)]


def _seed(jobs: Collection[Any], n: int) -> None:
    for i in range(n):
        jobs.insert_one({"name": f"p{i}", "weight": 60, "height": 170, "bmi": 20.8})


def _celery_backend(jobs: Collection[Any], n: int) -> None:
    for _ in range(n):
        task_id = str(uuid.uuid4())
        for status in ("STARTED", "SUCCESS"):
            meta: dict[str, Any] = {"_id": task_id, "status": status, "result": None,
                                    "traceback": None, "children": [],
                                    "date_done": datetime.now(UTC)}  # fmt: skip
            jobs.replace_one({"_id": task_id}, meta, upsert=True)


def _claim_and_outcome(jobs: Collection[Any], n: int) -> None:
    for start in range(0, n, SHARED_INSERT):
        batch = [new_job("noop", {}) for _ in range(min(SHARED_INSERT, n - start))]
        jobs.insert_many(batch)
        for job in batch:
            jobs.update_one(
                {"_id": job["_id"], "status": "queued", "attempts": 0},
                {"$set": {"status": "running", "started_at": datetime.now(UTC)},
                 "$inc": {"attempts": 1}},
            )  # fmt: skip
            jobs.update_one(
                {"_id": job["_id"], "status": "running", "attempts": 1},
                {"$set": {"status": "succeeded", "result": None,
                          "finished_at": datetime.now(UTC)}},
            )  # fmt: skip


def _jobline(store: JobStore, n: int, *, pure: bool = False) -> None:
    for start in range(0, n, SHARED_INSERT):
        batch = [new_job("noop", {}) for _ in range(min(SHARED_INSERT, n - start))]
        store.insert_many(batch)
        for job in batch:
            if pure:
                assert store.start_and_succeed(store.started(job, task_id=job["_id"]), None)
                continue
            claimed = store.claim(job["_id"], task_id=job["_id"], record=job)
            assert claimed is not None
            assert store.succeed(job["_id"], claimed["attempts"], None)


def _timed(server_pid: int, write: Callable[[], None], n: int) -> dict[str, float | None]:
    before = tree_cpu_seconds(server_pid)
    write()
    cpu_ms = (tree_cpu_seconds(server_pid) - before) * 1000 / n
    return {"server_cpu_ms_per_job": round(cpu_ms, 2),
            "ceiling_jobs_per_s": round(1000 / cpu_ms, 1) if cpu_ms else None}  # fmt: skip


def store_floor(servers: Servers, n: int) -> dict[str, Any]:
    """The embedded server's CPU per job for each design's writes, and the ceiling it sets."""
    pid = servers.server_pids()["mongodb (SecantusDB)"]
    client: MongoClient[Any] = MongoClient(servers.mongo_url)
    db = client[DB]
    out: dict[str, Any] = {"n": n}
    shapes: list[tuple[str, Callable[[Collection[Any], int], None], list[Any]]] = [
        ("seed", _seed, []),
        ("celery_mongodb", _celery_backend, []),
        ("claim_no_index", _claim_and_outcome, []),
        ("claim_status_index", _claim_and_outcome, [STATUS_INDEX]),
    ]
    try:
        for name, write, indexes in shapes:
            jobs = db[name]
            jobs.drop()
            for keys in indexes:
                jobs.create_index(keys)
            out[name] = _timed(pid, lambda: write(jobs, n), n)  # noqa: B023 - called at once
            jobs.drop()
        for name, auth, pure in (
            ("jobline", False, False),
            ("jobline_pure", False, True),
            ("jobline_auth", True, False),
        ):
            settings = servers.settings().model_copy(update={"mongo_db": DB, "auth": auth})
            store = JobStore(settings)
            store.jobs.drop()
            store.ensure_indexes()
            run = lambda: _jobline(store, n, pure=pure)  # noqa: B023, E731 - called at once
            out[name] = _timed(pid, run, n)
            out[name]["indexes"] = len(store.jobs.index_information())
            store.jobs.drop()
            store.close()
    finally:
        client.drop_database(DB)
        client.close()
    return out
