"""The pipeline's workloads, each measured over real HTTP against `jobline api`."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.http import wrk
from bench.servers import CpuMeter, Servers
from jobline import jobs
from jobline.core.ids import new_id
from jobline.store.jobs import JobStore
from jobline.store.paging import at_ms, encode_cursor
from jobline.store.records import TERMINAL, Status, new_job, now

API = "/api/v1"
# A run's last submission is looked for among the jobs made this recently.
NEWEST_WITHIN_S = 2


@dataclass(frozen=True)
class Endpoints:
    """Where jobs are submitted and read: the generic jobs API, or the seed's as a stand-in."""

    job_type: str
    submit: str
    params: dict[str, Any]
    body: dict[str, Any]
    one: str  # GET prefix for one job by id
    listing: str  # GET path of the first page of succeeded jobs
    everything: str  # GET path of the first page of every job (no filter)
    batch: str | None

    def list_page(self, cursor: str) -> str:
        return f"{self.listing}&cursor={cursor}"


def endpoints() -> Endpoints:
    """The generic `noop` jobs when the catalogue has them, else BMI calculations taking 0 s."""
    if "noop" in jobs.load():
        return Endpoints(
            job_type="noop",
            submit=f"{API}/jobs",
            params={},
            body={"type": "noop", "params": {}},
            one=f"{API}/jobs/",
            listing=f"{API}/jobs?status=succeeded&limit=50",
            everything=f"{API}/jobs?limit=50",
            batch=f"{API}/jobs:batch",
        )
    params = {"name": "bench", "weight": 70, "height": 175}
    return Endpoints(
        job_type="bmi",
        submit=f"{API}/calculations",
        params=params,
        body=params,
        one=f"{API}/calculations/",
        listing=f"{API}/calculations?limit=50",
        everything=f"{API}/calculations?limit=50",
        batch=None,
    )


@dataclass
class Bench:
    """A running jobline (API and worker) and what every workload needs of it."""

    servers: Servers
    base: str
    ends: Endpoints
    store: JobStore
    scratch: Path
    jobs_run: int = 0
    notes: list[str] = field(default_factory=list)

    def body_file(self, name: str, body: Any) -> Path:
        path = self.scratch / name
        path.write_text(json.dumps(body))
        return path

    def unfinished(self) -> int:
        """Jobs not yet terminal: one equality count per status, each a short index range.

        (A count over the terminal statuses would scan every finished job on the
        embedded server, 10 times a second, and slow down what it measures.)
        """
        waiting = [s for s in Status if s not in TERMINAL]
        return sum(self.store.jobs.count_documents({"status": str(s)}) for s in waiting)

    def newest_job(self) -> str | None:
        """The id of the job submitted last, if one was in the past few seconds."""
        since = {"created_at": {"$gte": now() - timedelta(seconds=NEWEST_WITHIN_S)}}
        order = [("created_at", -1), ("_id", -1)]
        found = list(self.store.jobs.find(since, {"_id": 1}).sort(order).limit(1))
        return str(found[0]["_id"]) if found else None

    def wait_drained(self, timeout: float) -> float:
        """Wait until no job is unfinished; the monotonic time it was so.

        While a backlog drains, only the job submitted last is read (by its id):
        the queue is first in, first out, so the others are done by the time it
        is. Counting thousands of waiting jobs instead cost the embedded server,
        which reads every document a count matches, a tenth of its time.
        """
        deadline = time.monotonic() + timeout
        last = self.newest_job()
        while last is not None and time.monotonic() < deadline:
            job = self.store.jobs.find_one({"_id": last}, {"status": 1})
            if job is None or job["status"] in TERMINAL:
                break
            time.sleep(0.05)
        while time.monotonic() < deadline:
            left = self.unfinished()
            if left == 0:
                return time.monotonic()
            # Counting thousands of waiting jobs costs the embedded server more
            # than it spends running them: look often only near the end.
            time.sleep(0.05 if left < 50 else 1.0)
        raise TimeoutError(f"{self.unfinished()} jobs unfinished after {timeout:.0f}s")

    def pids(self) -> dict[str, int]:
        """The processes a job passes through, by name (for CPU accounting)."""
        api, worker = self.servers.api_process, self.servers.worker_process
        assert api is not None and worker is not None
        return {**self.servers.server_pids(), "jobline api": api.pid, "jobline worker": worker.pid}

    def opcounters(self) -> dict[str, int]:
        """The MongoDB server's operation counters (SecantusDB counts each insert_many once)."""
        found = self.store.client.admin.command("serverStatus").get("opcounters", {})
        return {k: int(found.get(k, 0)) for k in ("insert", "query", "update", "delete")}

    def total_jobs(self) -> int:
        return self.store.jobs.count_documents({})


def pipeline_throughput(
    b: Bench, n: int, clients: int, watching: dict[str, int] | None = None
) -> dict[str, Any]:
    """N jobs over HTTP by several clients, until all are terminal in the store.

    ``watching``: processes besides the pipeline's whose CPU counts too (a monitor)."""
    before_total = b.total_jobs()
    body = b.body_file("one.json", b.ends.body)
    cpu = CpuMeter({**b.pids(), **(watching or {})}).start()
    ops = b.opcounters()
    start = time.monotonic()
    load = wrk(b.base, "post", b.ends.submit, body, connections=clients, seconds=600, limit=n)
    accepted = b.total_jobs() - before_total
    done = b.wait_drained(timeout=900)
    cpu.stop()
    ops = {k: v - ops[k] for k, v in b.opcounters().items()}
    b.jobs_run += accepted
    return {
        "n": accepted,
        "cpu_ms_per_job": cpu.per_job_ms(accepted),
        # Round trips to MongoDB per job (the harness's own counts are commands, not these).
        "mongo_ops_per_job": {k: round(v / accepted, 3) for k, v in ops.items()},
        "clients": clients,
        "jobs_per_s": round(accepted / (done - start), 1),
        "submit": load.summary(),
    }


def submit_at_rate(b: Bench, rate: float, seconds: float) -> dict[str, Any]:
    """POST at a fixed rate (0: one client, each request as soon as the last is answered):
    the latency each submission sees."""
    body = b.body_file("one.json", b.ends.body)
    connections = max(4, int(rate // 25)) if rate else 1
    load = wrk(b.base, "post", b.ends.submit, body, connections=connections, seconds=seconds,
               rate=rate)  # fmt: skip
    b.jobs_run += load.requests
    return {"target_per_s": rate, **load.summary()}


def highest_rate(b: Bench, rates: list[float], seconds: float, p99_ms: float) -> dict[str, Any]:
    """The highest of ``rates`` held (achieved ≥ 90 %) with p99 under ``p99_ms``."""
    steps, held = [], 0.0
    for rate in rates:
        step = submit_at_rate(b, rate, seconds)
        steps.append(step)
        if step["per_s"] < 0.9 * rate or step["p99_ms"] >= p99_ms or step["errors"]:
            break
        held = rate
        b.wait_drained(timeout=600)  # each step starts on an idle worker
    return {"p99_limit_ms": p99_ms, "held_per_s": held, "steps": steps}


class Client:
    """One keep-alive HTTP connection, for the single-client measurements."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": ordered[-1]}


def end_to_end(b: Bench, n: int) -> dict[str, Any]:
    """On an idle system: submit, then poll GET until it says succeeded."""
    client = Client(b.base)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        status, job = client.call("POST", b.ends.submit, b.ends.body)
        assert status == 202, job
        while True:
            status, seen = client.call("GET", b.ends.one + job["id"])
            if seen["status"] in TERMINAL:
                break
            time.sleep(0.001)
        samples.append((time.perf_counter() - start) * 1000)
        assert seen["status"] == Status.SUCCEEDED, seen
    b.jobs_run += n
    return {"n": n, "poll_interval_ms": 1, **percentiles(samples)}


# The read path's jobs arrived over this past hour (some 28 a second at 100,000),
# as a busy store's would, rather than all in the instant before the reads.
FILL_SPREAD_MS = 3_600_000


def fill_store(b: Bench, total: int, chunk: int = 1000) -> tuple[list[str], float]:
    """Insert ``total`` succeeded jobs directly, in the store's own format; their ids."""
    start = time.monotonic()
    first_ms = int(now().timestamp() * 1000) - FILL_SPREAD_MS
    ids: list[str] = []
    for offset in range(0, total, chunk):
        docs = []
        for i in range(offset, min(offset + chunk, total)):
            job = new_job(b.ends.job_type, b.ends.params)
            made = first_ms + i * FILL_SPREAD_MS // total
            t = at_ms(made)
            job.update(_id=new_id(made), created_at=t, updated_at=t, started_at=t, finished_at=t)
            job.update(status=str(Status.SUCCEEDED), attempts=1, progress=1.0, result={})
            docs.append(job)
        b.store.jobs.insert_many(docs, ordered=False)
        ids.extend(d["_id"] for d in docs)
    return ids, time.monotonic() - start


class Trickle:
    """Submissions at a steady rate from a background thread: a store that is still live."""

    def __init__(self, b: Bench, per_s: float) -> None:
        self.b, self.interval, self.sent = b, 1.0 / per_s, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.b.jobs_run += self.sent

    def _run(self) -> None:
        client, due = Client(self.b.base), time.monotonic()
        while not self.stop.wait(max(0.0, due - time.monotonic())):
            status, _ = client.call("POST", self.b.ends.submit, self.b.ends.body)
            self.sent += status == 202
            due += self.interval


def read_path(b: Bench, total: int, seconds: float) -> dict[str, Any]:
    """GET one job and list pages, with ``total`` jobs in the store, while jobs keep
    arriving at the rate the store was filled at (as in a live service)."""
    b.servers.reset_jobs()
    per_s = total * 1000 / FILL_SPREAD_MS
    # Jobs keep arriving from the moment the fill's last hour ends, through the reads.
    with Trickle(b, per_s):
        ids, fill_s = fill_store(b, total)
        id_file = b.scratch / "ids.txt"
        id_file.write_text("\n".join(ids) + "\n")
        ordered = sorted(ids, reverse=True)  # newest first, as pages are
        deep = b.ends.list_page(encode_cursor(ordered[len(ordered) // 2]))
        loads = {
            "get_one": wrk(b.base, "get", b.ends.one, id_file, connections=1, seconds=seconds),
            "list_first": wrk(b.base, "get", b.ends.listing, connections=1, seconds=seconds),
            "list_all": wrk(b.base, "get", b.ends.everything, connections=1, seconds=seconds),
            "list_deep": wrk(b.base, "get", deep, connections=1, seconds=seconds),
        }
    b.wait_drained(timeout=300)
    return {
        "jobs_in_store": total,
        "insert_many_s": round(fill_s, 1),
        "arriving_per_s": round(per_s, 1),
        **{name: load.summary() for name, load in loads.items()},
    }


def batch_submit(b: Bench, n: int, size: int = 1000) -> dict[str, Any]:
    """``n`` jobs through the batch endpoint, ``size`` a request, one client."""
    if b.ends.batch is None:
        return {"skipped": "no batch endpoint in this build"}
    client = Client(b.base)
    body = {"jobs": [b.ends.body] * size}
    start = time.perf_counter()
    accepted = 0
    for _ in range(0, n, size):
        status, answer = client.call("POST", b.ends.batch, body)
        assert status == 200, answer
        accepted += answer["accepted"]
    seconds = time.perf_counter() - start
    b.jobs_run += accepted
    return {"n": accepted, "batch_size": size, "seconds": round(seconds, 2),
            "jobs_per_s": round(accepted / seconds, 1)}  # fmt: skip
