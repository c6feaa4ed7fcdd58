"""The servers and processes a benchmark run starts, and stops, itself.

Everything listens on 127.0.0.1 on free ports and keeps its data in a scratch
directory; nothing outside the run is touched.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from jobline.core.settings import Settings
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore

ROOT = Path(__file__).resolve().parent.parent
# Redis databases: jobline's broker, then one per peer engine, so queues never mix.
JOBLINE_DB, CELERY_DB, RQ_DB, DRAMATIQ_DB = 0, 1, 2, 3


def redis_db_url(base: str, db: int) -> str:
    return base.rsplit("/", 1)[0] + f"/{db}"


def rss_kb(pid: int) -> int:
    """Resident set size of one process, in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def tree_rss_mb(pid: int) -> dict[str, float]:
    """RSS of a process and its children: the parent, the largest child and the sum."""
    kids = [rss_kb(c) for c in children(pid)]
    parent = rss_kb(pid)
    return {
        "parent_mb": round(parent / 1024, 1),
        "largest_child_mb": round(max(kids, default=0) / 1024, 1),
        "total_mb": round((parent + sum(kids)) / 1024, 1),
    }


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants alive now."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
        todo.extend(children(p))
    return total


class CpuMeter:
    """CPU seconds each named process tree spends between start() and stop().

    What a workload costs, part by part, on a machine whose cores they share.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        usage = os.times()  # with finished children: wrk
        now["load generator"] = sum(usage[:4])
        return now

    def start(self) -> CpuMeter:
        self.before = self._now()
        return self

    def stop(self) -> CpuMeter:
        after = self._now()
        self.spent = {name: after[name] - self.before.get(name, 0.0) for name in after}
        return self

    def per_job_ms(self, jobs: int) -> dict[str, float]:
        per = {name: round(s * 1000 / jobs, 2) for name, s in self.spent.items()}
        per["total"] = round(sum(self.spent.values()) * 1000 / jobs, 2)
        return per


@dataclass
class Servers:
    """redis-server and SecantusDB for the whole run, and jobline's own processes."""

    data_dir: Path
    concurrency: int
    api_workers: int = 2
    api_threads: int = 8
    redis_url: str = ""
    mongo_url: str = ""
    processes: list[local.Process] = field(default_factory=list)
    api_port: int = 0
    api_process: local.Process | None = None
    worker_process: local.Process | None = None

    def start(self) -> Servers:
        redis_proc, self.redis_url = local.start_redis(self.data_dir / "redis", aof=True)
        self.processes.append(redis_proc)
        mongo_proc, self.mongo_url = local.start_mongo(self.data_dir / "mongodb")
        self.processes.append(mongo_proc)
        return self

    def server_pids(self) -> dict[str, int]:
        """redis-server and the MongoDB server, by name."""
        redis_proc, mongo_proc = self.processes[:2]
        return {"redis-server": redis_proc.pid, "mongodb (SecantusDB)": mongo_proc.pid}

    def settings(self) -> Settings:
        """What jobline's processes here run with (see env): the harness's store makes
        the same indexes as theirs."""
        return Settings(
            redis_url=redis_db_url(self.redis_url, JOBLINE_DB),
            mongo_url=self.mongo_url,
            mongo_db="jobline_bench",
            bmi_seconds=0,
            auth=False,
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child process: these servers, auth off, the demo's sleep off."""
        env = dict(os.environ)
        env.update(
            JOBLINE_REDIS_URL=redis_db_url(self.redis_url, JOBLINE_DB),
            JOBLINE_MONGO_URL=self.mongo_url,
            JOBLINE_MONGO_DB="jobline_bench",
            JOBLINE_BMI_SECONDS="0",
            JOBLINE_AUTH="off",
            # Every engine logs warnings only: a line per job is not what is compared.
            JOBLINE_LOG_LEVEL="WARNING",
            # Keeps what the run was started with (bench/profile.py's sampler).
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        env.update(extra)
        return env

    def store(self) -> JobStore:
        store = JobStore(self.settings())
        store.ensure_indexes()
        return store

    def reset_jobs(self) -> None:
        """An empty job collection and an empty broker database between workloads."""
        store = self.store()
        store.jobs.drop()
        store.ensure_indexes()
        store.close()
        redis.Redis.from_url(redis_db_url(self.redis_url, JOBLINE_DB)).flushdb()

    # -- jobline's API and worker ------------------------------------------------

    def start_api(self) -> str:
        """`jobline api` under gunicorn; returns its base URL once it answers."""
        self.api_port = local.free_port()
        argv = local.jobline_argv(
            "api",
            f"--port={self.api_port}",
            f"--workers={self.api_workers}",
            f"--threads={self.api_threads}",
        )
        # Access logs off: writing a line per request is not what is measured.
        env = self.env(GUNICORN_CMD_ARGS="--access-logfile=/dev/null")
        self.api_process = local.Process("api", argv, env=env, log=self.data_dir / "api.log")
        self.api_process.start()
        base = f"http://127.0.0.1:{self.api_port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.api_process.alive():
                raise local.ServerError(f"the API exited at start; see {self.data_dir}/api.log")
            try:
                # /healthz, not /readyz: readiness also wants a worker, started next.
                with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return base
            except OSError:
                time.sleep(0.1)
        raise local.ServerError("the API did not become ready within 60s")

    def start_worker(self) -> local.Process:
        """`jobline worker` with the run's fixed concurrency, once it answers a ping."""
        argv = local.jobline_argv(
            "worker", "--loglevel=WARNING", f"--concurrency={self.concurrency}"
        )
        self.worker_process = start_celery_worker(
            "worker", argv, self.env(), self.data_dir / "worker.log", make_celery(self.settings())
        )
        return self.worker_process

    def start_flower(self) -> local.Process:
        """`jobline flower` on these servers, once it listens and the workers send it events."""
        port = local.free_port()
        env = self.env(JOBLINE_FLOWER_BASIC_AUTH="bench:bench")
        argv = local.jobline_argv("flower", f"--port={port}")
        flower = local.Process("flower", argv, env=env, log=self.data_dir / "flower.log").start()
        local.wait_until(lambda: local.port_open(port), 60, "Flower", flower)
        # Flower asks the workers for task events as it starts, and again every few
        # seconds; asking here too means the run does not begin before they send them.
        make_celery(self.settings()).control.enable_events()
        time.sleep(1)
        return flower

    def stop_flower(self, flower: local.Process) -> None:
        flower.stop()
        make_celery(self.settings()).control.disable_events()

    def stop_jobline(self) -> None:
        for process in (self.worker_process, self.api_process):
            if process is not None:
                process.stop()
        self.worker_process = self.api_process = None

    def stop(self) -> None:
        self.stop_jobline()
        for process in reversed(self.processes):
            process.stop()


def start_celery_worker(
    name: str, argv: list[str], env: dict[str, str], log: Path, app: Celery
) -> local.Process:
    """Start a Celery worker process and wait until it answers a ping."""
    process = local.Process(name, argv, env=env, log=log).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not process.alive():
            raise local.ServerError(f"{name} exited at start; see {log}")
        if app.control.ping(timeout=0.5):
            return process
    process.stop()
    raise local.ServerError(f"{name} did not answer within 60s; see {log}")


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def versions(servers: Servers | None = None) -> dict[str, Any]:
    """Versions of everything measured, for the results file."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, Any] = {"python": sys.version.split()[0]}
    for package in ("jobline", "celery", "kombu", "redis", "pymongo", "secantusdb", "rq",
                    "dramatiq", "gunicorn", "flask"):  # fmt: skip
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    if servers is not None:
        info: dict[str, Any] = redis.Redis.from_url(servers.redis_url).info("server")  # type: ignore[assignment]
        found["redis-server"] = info.get("redis_version")
    return found
