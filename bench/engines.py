"""Engine baselines: raw Celery, RQ and Dramatiq no-op tasks on the same Redis.

Tasks are sent from this one process as fast as the client library allows
(results ignored), while the engine's workers, at the run's concurrency,
already consume them. Each no-op task does one Redis INCR, the way its
completion is observed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from bench import counter
from bench.servers import CELERY_DB, DRAMATIQ_DB, RQ_DB, CpuMeter, Servers, redis_db_url
from jobline.local import servers as local

ENGINES = ("celery", "rq", "dramatiq")


def wait_count(client: redis.Redis, n: int, timeout: float) -> float:
    """Wait until ``n`` tasks have run; returns the monotonic time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _done(client) >= n:
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"only {_done(client)} of {n} tasks ran in {timeout}s")


def _done(client: redis.Redis) -> int:
    value: bytes | None = client.get(counter.KEY)  # type: ignore[assignment]
    return int(value or 0)


def _celery(servers: Servers, env: dict[str, str]) -> tuple[list[str], Callable[[], Any]]:
    argv = [sys.executable,
        "-m", "celery", "-A", "bench.noop_celery", "worker", "--loglevel=WARNING",
        f"--concurrency={servers.concurrency}", "--hostname=rawcelery@%h",
    ]  # fmt: skip
    module = importlib.import_module("bench.noop_celery")
    return argv, module.noop.delay


def _rq(servers: Servers, env: dict[str, str]) -> tuple[list[str], Callable[[], Any]]:
    from rq import Queue

    url = env["BENCH_RQ_URL"]
    argv = [sys.executable,
        "-m", "rq.cli", "worker-pool", "--url", url, f"--num-workers={servers.concurrency}",
        "--logging-level=WARNING", "bench",
    ]  # fmt: skip
    queue = Queue("bench", connection=redis.Redis.from_url(url))
    from bench.noop_rq import noop

    return argv, lambda: queue.enqueue(noop, result_ttl=0)


def _dramatiq(servers: Servers, env: dict[str, str]) -> tuple[list[str], Callable[[], Any]]:
    argv = [sys.executable,
        "-m", "dramatiq", "bench.noop_dramatiq", f"--processes={servers.concurrency}",
        "--threads=1",
    ]  # fmt: skip
    module = importlib.import_module("bench.noop_dramatiq")
    return argv, module.noop.send


SETUPS = {"celery": _celery, "rq": _rq, "dramatiq": _dramatiq}


def engine_env(servers: Servers) -> dict[str, str]:
    return servers.env(
        JOBLINE_REDIS_URL=redis_db_url(servers.redis_url, CELERY_DB),
        BENCH_RQ_URL=redis_db_url(servers.redis_url, RQ_DB),
        BENCH_DRAMATIQ_URL=redis_db_url(servers.redis_url, DRAMATIQ_DB),
        BENCH_COUNTER_URL=redis_db_url(servers.redis_url, DRAMATIQ_DB + 1),
    )


def installed(engine: str) -> bool:
    """RQ and Dramatiq are in the bench extra only; Celery is always there."""
    return importlib.util.find_spec(engine) is not None


def run_engine(servers: Servers, engine: str, n: int, timeout: float = 600) -> dict[str, Any]:
    """Enqueue ``n`` no-op tasks from this process; enqueued/s and processed/s."""
    if not installed(engine):
        return {"skipped": f"{engine} is not installed (pip install -e '.[bench]')"}

    env = engine_env(servers)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("BENCH_", "JOBLINE_"))})
    argv, send = SETUPS[engine](servers, env)
    tally = redis.Redis.from_url(env["BENCH_COUNTER_URL"])
    tally.delete(counter.KEY)
    log = servers.data_dir / f"{engine}.log"
    process = local.Process(engine, argv, env=env, log=log).start()
    try:
        send()  # one warm-up task: the workers are up once it has run
        wait_count(tally, 1, 60)
        tally.delete(counter.KEY)
        cpu = CpuMeter({**servers.server_pids(), f"{engine} worker": process.pid}).start()
        start = time.monotonic()
        for _ in range(n):
            send()
        sent = time.monotonic()
        done = wait_count(tally, n, timeout)
        cpu.stop()
    finally:
        process.stop()
    return {
        "n": n,
        "cpu_ms_per_task": cpu.per_job_ms(n),
        "enqueue_s": round(sent - start, 3),
        "enqueued_per_s": round(n / (sent - start), 1),
        "processed_per_s": round(n / (done - start), 1),
    }
