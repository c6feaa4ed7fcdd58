"""The designs jobline replaces, under jobline's own HTTP load, on the same servers.

``seed``: the seed's design (Flask-RESTX POST → Celery task → ``insert_one``,
bench/seed_design.py). ``celery_mongodb``: Celery's ``mongodb://`` result
backend with ``task_track_started`` and ``acks_late`` (bench/celery_backend.py).
Each runs under gunicorn with jobline's API processes and threads, with a
Celery worker at the run's concurrency, and takes N POSTs from the same wrk
connections as the pipeline workload; jobs/s runs from the first request
until the Nth result is recorded (its task's INCR, after the write).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from bench import counter
from bench.engines import wait_count
from bench.http import wrk
from bench.servers import DRAMATIQ_DB, CpuMeter, Servers, redis_db_url
from jobline.local import servers as local

# Redis databases after the engines' (jobline 0, Celery 1, RQ 2, Dramatiq 3, counter 4).
PEERS = {"seed": ("bench.seed_design", 5), "celery_mongodb": ("bench.celery_backend", 6)}
COUNTER_DB = DRAMATIQ_DB + 1


def _wait_http(base: str, process: local.Process, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not process.alive():
            raise local.ServerError(f"peer API exited at start; see {log}")
        try:
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(
                base + "/api/v1/jobs", data=b"{}", method="POST", headers=headers
            )
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 202:
                    return
        except OSError:
            time.sleep(0.1)
    raise local.ServerError(f"peer API did not answer within 60s; see {log}")


def run_peer(servers: Servers, name: str, n: int, clients: int, scratch: Path) -> dict[str, Any]:
    """N POSTs to one peer; jobs/s to the Nth recorded result, and CPU per job by process."""
    module, db = PEERS[name]
    env = servers.env(
        BENCH_BROKER_URL=redis_db_url(servers.redis_url, db),
        BENCH_MONGO_URL=servers.mongo_url,
        BENCH_COUNTER_URL=redis_db_url(servers.redis_url, COUNTER_DB),
    )
    redis.Redis.from_url(env["BENCH_BROKER_URL"]).flushdb()
    tally = redis.Redis.from_url(env["BENCH_COUNTER_URL"])
    tally.delete(counter.KEY)
    port = local.free_port()
    api_argv = [sys.executable, "-m", "gunicorn", f"--bind=127.0.0.1:{port}",
                f"--workers={servers.api_workers}", f"--threads={servers.api_threads}",
                "--worker-class=gthread", "--access-logfile=/dev/null", "--log-level=warning",
                f"{module}:api"]  # fmt: skip
    worker_argv = [sys.executable, "-m", "celery", "-A", module, "worker", "--loglevel=WARNING",
                   f"--concurrency={servers.concurrency}", f"--hostname={name}@%h"]  # fmt: skip
    api_log, worker_log = servers.data_dir / f"{name}-api.log", servers.data_dir / f"{name}.log"
    api = local.Process(f"{name} api", api_argv, env=env, log=api_log).start()
    worker = local.Process(f"{name} worker", worker_argv, env=env, log=worker_log).start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base, api, api_log)
        wait_count(tally, 1, 60)  # the worker is up once the warm-up job is recorded
        tally.delete(counter.KEY)
        body = scratch / f"{name}.json"
        body.write_text('{"name": "bench", "weight": 70, "height": 175}')
        pids = {**servers.server_pids(), f"{name} api": api.pid, f"{name} worker": worker.pid}
        cpu = CpuMeter(pids).start()
        start = time.monotonic()
        load = wrk(base, "post", "/api/v1/jobs", body, connections=clients, seconds=600, limit=n)
        done = wait_count(tally, load.requests - load.failed, timeout=600)
        cpu.stop()
    finally:
        worker.stop()
        api.stop()
    recorded = load.requests - load.failed
    return {
        "n": recorded,
        "clients": clients,
        "jobs_per_s": round(recorded / (done - start), 1),
        "cpu_ms_per_job": cpu.per_job_ms(recorded),
        "submit": load.summary(),
    }
