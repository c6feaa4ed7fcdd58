"""`python -m bench.profile`: where each process's CPU goes under the pipeline workload.

    .venv/bin/python -m bench.profile --jobs 3000 [--out DIR]

Starts the bench's servers, API and worker as `make bench` does, with the
sampler of bench/sampler.py in every Python process (SecantusDB, gunicorn's
workers, Celery's processes), runs the pipeline workload, and prints for each
process the functions its CPU time was spent in (own: on top of the stack;
inclusive: anywhere in it), as a share of that process's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROLES = (
    ("embedded_mongo", "mongodb (SecantusDB)"),
    ("api", "jobline api"),
    ("worker", "jobline worker"),
)


def role(argv: list[str]) -> str | None:
    line = " ".join(argv)
    return next((name for key, name in ROLES if key in line), None)


def summarise(directory: Path, top: int) -> str:
    merged: dict[str, dict[str, Any]] = {}
    for path in directory.glob("*.json"):
        found = json.loads(path.read_text())
        name = role(found["argv"])
        if name is None or not found["cpu_us"]:
            continue
        into = merged.setdefault(name, {"cpu_us": 0, "unattributed_us": 0, "own": Counter(),
                                        "inclusive": Counter(), "processes": 0})  # fmt: skip
        into["cpu_us"] += found["cpu_us"]
        into["unattributed_us"] += found["unattributed_us"]
        into["processes"] += 1
        into["own"].update(dict(found["own"]))
        into["inclusive"].update(dict(found["inclusive"]))
    lines = []
    for name, found in sorted(merged.items()):
        total = found["cpu_us"] - found["unattributed_us"]
        lines += ["", f"## {name}: {found['cpu_us'] / 1e6:.1f} s CPU in {found['processes']} "
                  f"processes, {total / found['cpu_us']:.0%} of it attributed", ""]  # fmt: skip
        for kind in ("inclusive", "own"):
            lines += [f"| {kind} | share |", "| --- | ---: |"]
            lines += [f"| `{where}` | {us / total:.0%} |"
                      for where, us in found[kind].most_common(top)]  # fmt: skip
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="keep the samples here")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="jobline-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    # Every Python process started from here on samples itself (bench/profiling).
    os.environ["BENCH_PROFILE_DIR"] = str(out)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE / "profiling"), str(HERE.parent)])

    from bench import workloads
    from bench.servers import Servers

    with tempfile.TemporaryDirectory(prefix="jobline-bench-") as tmp:
        servers = Servers(Path(tmp), concurrency=os.cpu_count() or 2).start()
        try:
            servers.reset_jobs()
            b = workloads.Bench(servers, servers.start_api(), workloads.endpoints(),
                                servers.store(), Path(tmp))  # fmt: skip
            servers.start_worker()
            workloads.pipeline_throughput(b, 50, args.clients)  # warm: not what is profiled
            (out / "reset").touch()
            time.sleep(2.5)  # every sampler has started its counts afresh
            found = workloads.pipeline_throughput(b, args.jobs, args.clients)
            time.sleep(2.5)  # the last counts are written
            b.store.close()
        finally:
            servers.stop()
    print(f"pipeline under the sampler: {found['jobs_per_s']} jobs/s, {found['n']} jobs")
    print(summarise(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
