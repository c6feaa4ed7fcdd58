"""`python -m bench`: run every workload side by side with its baseline; print and save."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import engines, files_logs, floor, peers, report, workloads
from bench.servers import Servers, tree_rss_mb, versions

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
WORKLOADS = ("engine", "peers", "floor", "pipeline", "monitored", "submit", "e2e", "read",
             "batch", "memory", "files", "logs")  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """How much each workload does; `--quick` is for a smoke run, not for figures."""

    # Sized for about eight minutes on 2 cores, where the embedded MongoDB server
    # lets the pipeline run some 100 jobs/s: every job submitted must also drain.
    engine_n: int = 5_000
    rq_n: int = 500  # RQ forks a process per job: far slower, so fewer
    pipeline_n: int = 3_000
    clients: int = 8
    submit_rate: float = 200
    submit_seconds: float = 30
    alone_seconds: float = 10
    step_rates: tuple[float, ...] = (100, 200, 400)
    step_seconds: float = 5
    sequential_seconds: float = 10
    e2e_n: int = 100
    read_jobs: int = 100_000
    read_seconds: float = 5
    batch_n: int = 10_000
    memory_jobs: int = 25_000  # jobs the worker has run when its RSS is read again
    file_mb: int = 50
    log_lines: int = 5_000
    floor_n: int = 1_000


FULL = Sizes()
QUICK = Sizes(
    engine_n=300, rq_n=100, pipeline_n=300, clients=4, submit_rate=50, submit_seconds=3,
    alone_seconds=2, step_rates=(50, 100, 200), step_seconds=2, sequential_seconds=2, e2e_n=10,
    read_jobs=2_000, read_seconds=2,
    batch_n=2_000, memory_jobs=600, file_mb=5, log_lines=1_000, floor_n=200,
)  # fmt: skip
# The suite's own check that the harness runs and reports: no figure means anything.
SMOKE = replace(QUICK, engine_n=100, rq_n=30, pipeline_n=100, floor_n=100)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, short runs (smoke test)")
    parser.add_argument("--smoke", action="store_true", help="smaller still: the suite's check")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of: {', '.join(WORKLOADS)}")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2,
                        help="worker processes, the same for every engine [cores]")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON file")
    return parser.parse_args(argv)


def run_engines(servers: Servers, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in engines.ENGINES:
        n = sizes.rq_n if engine == "rq" else sizes.engine_n
        print(f"· engine {engine}: {n} no-op tasks", file=sys.stderr, flush=True)
        out[engine] = engines.run_engine(servers, engine, n)
    return out


def run_peers(servers: Servers, sizes: Sizes, scratch: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in peers.PEERS:
        print(f"· peer {name}: {sizes.pipeline_n} jobs over HTTP", file=sys.stderr, flush=True)
        out[name] = peers.run_peer(servers, name, sizes.pipeline_n, sizes.clients, scratch)
    return out


def submit_alone(b: workloads.Bench, sizes: Sizes) -> dict[str, Any]:
    """The API's own latency: the submit rate before any worker runs (its jobs drain
    once the worker is up), so no job competes with it for the cores."""
    print(f"· submit latency at {sizes.submit_rate:.0f}/s, no worker running",
          file=sys.stderr, flush=True)  # fmt: skip
    # Not counted: each gunicorn thread's first request opens its connections.
    workloads.submit_at_rate(b, sizes.submit_rate, 1)
    return {"submit_alone": workloads.submit_at_rate(b, sizes.submit_rate, sizes.alone_seconds)}


def throughput(
    b: workloads.Bench, sizes: Sizes, step: Callable[[str, str], bool], memory: dict[str, Any]
) -> dict[str, Any]:
    """The pipeline's throughput; then again while Flower watches (its task events on), as
    under `jobline up`, Flower's own CPU counted."""
    out: dict[str, Any] = {}
    api, worker = b.servers.api_process, b.servers.worker_process
    assert api is not None and worker is not None
    if step("pipeline", f"pipeline throughput, {sizes.pipeline_n} jobs"):
        out["pipeline"] = workloads.pipeline_throughput(b, sizes.pipeline_n, sizes.clients)
        memory["api_after_pipeline"] = {"jobs_submitted": b.jobs_run, **tree_rss_mb(api.pid)}
        memory["worker_after_pipeline"] = {"jobs": b.jobs_run, **tree_rss_mb(worker.pid)}
    if step("monitored", f"pipeline throughput with Flower watching, {sizes.pipeline_n} jobs"):
        flower = b.servers.start_flower()
        try:
            out["monitored"] = workloads.pipeline_throughput(
                b, sizes.pipeline_n, sizes.clients, watching={"flower": flower.pid}
            )
        finally:
            b.servers.stop_flower(flower)
    return out


def files_and_logs(
    b: workloads.Bench, sizes: Sizes, step: Callable[[str, str], bool]
) -> dict[str, Any]:
    """A file through the API and GridFS, and what a logged line costs a job."""
    out: dict[str, Any] = {}
    if step("files", f"a file of {sizes.file_mb} MB up and down"):
        out["files"] = files_logs.file_throughput(b, sizes.file_mb)
    if step("logs", f"the cost of a logged line, {sizes.log_lines} lines"):
        out["logs"] = files_logs.log_cost(b, sizes.log_lines)
    return out


def run_jobline(servers: Servers, sizes: Sizes, only: set[str], scratch: Path) -> dict[str, Any]:
    """The pipeline workloads, on one API and one worker for the whole run."""
    out: dict[str, Any] = {}
    servers.reset_jobs()
    b = workloads.Bench(servers, servers.start_api(), workloads.endpoints(), servers.store(),
                        scratch)  # fmt: skip
    out.update(submit_alone(b, sizes) if "submit" in only else {})
    worker = servers.start_worker()
    b.wait_drained(timeout=600)
    api = servers.api_process
    assert api is not None
    out["endpoints"] = {"submit": b.ends.submit, "job_type": b.ends.job_type}
    memory: dict[str, Any] = {
        "api_start": tree_rss_mb(api.pid),
        "worker_start": tree_rss_mb(worker.pid),
    }

    def step(name: str, what: str) -> bool:
        if name in only:
            print(f"· {what}", file=sys.stderr, flush=True)
        return name in only

    if step("e2e", f"end-to-end latency, {sizes.e2e_n} jobs one at a time"):
        out["e2e"] = workloads.end_to_end(b, sizes.e2e_n)
    out.update(throughput(b, sizes, step, memory))
    if step("submit", f"submit latency at {sizes.submit_rate:.0f}/s"):
        out["submit"] = workloads.submit_at_rate(b, sizes.submit_rate, sizes.submit_seconds)
        b.wait_drained(timeout=900)
        out["submit_sequential"] = workloads.submit_at_rate(b, 0, sizes.sequential_seconds)
        b.wait_drained(timeout=900)
        out["submit_max"] = workloads.highest_rate(b, list(sizes.step_rates), sizes.step_seconds,
                                                   p99_ms=50)  # fmt: skip
    if "memory" in only:
        extra = sizes.memory_jobs - b.jobs_run
        if extra > 0:
            print(f"· memory: {extra} more jobs through the worker", file=sys.stderr, flush=True)
            workloads.pipeline_throughput(b, extra, sizes.clients)
        b.wait_drained(timeout=1800)
        memory["worker_end"] = {"jobs": b.jobs_run, **tree_rss_mb(worker.pid)}
    if step("read", f"read path with {sizes.read_jobs} jobs in the store"):
        out["read"] = workloads.read_path(b, sizes.read_jobs, sizes.read_seconds)
    out.update(files_and_logs(b, sizes, step))
    # Last: only acceptance is timed, and its jobs are left queued when the run ends.
    if step("batch", f"batch submit of {sizes.batch_n} jobs"):
        out["batch"] = workloads.batch_submit(b, sizes.batch_n)
    memory["api_end"] = {"jobs_submitted": b.jobs_run, **tree_rss_mb(api.pid)}
    out["memory"] = memory
    b.store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = {"smoke": SMOKE, "quick": QUICK, "full": FULL}[mode]
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": mode,
        "cores": os.cpu_count(),
        "concurrency": args.concurrency,
        "load_average": os.getloadavg(),
        "sizes": asdict(sizes),
    }
    with tempfile.TemporaryDirectory(prefix="jobline-bench-") as tmp:
        scratch = Path(tmp)
        servers = Servers(scratch, concurrency=args.concurrency).start()
        try:
            results["versions"] = versions(servers)
            if "engine" in only:
                results["engine"] = run_engines(servers, sizes)
            if "peers" in only:
                results["peers"] = run_peers(servers, sizes, scratch)
            if "floor" in only:
                print(f"· the store's floor: {sizes.floor_n} jobs of each design's writes",
                      file=sys.stderr, flush=True)  # fmt: skip
                results["floor"] = floor.store_floor(servers, sizes.floor_n)
            if only - {"engine", "peers", "floor"}:
                results.update(run_jobline(servers, sizes, only, scratch))
        finally:
            servers.stop()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    print(files_logs.table(results))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
