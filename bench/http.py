"""HTTP load with wrk (Debian's `wrk`), driven by bench/lua/jobline.lua."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "lua" / "jobline.lua"


class WrkError(RuntimeError):
    """wrk is missing or did not report."""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "per_s": round(self.rate, 1),
            "errors": self.failed,
            **{f"{k}_ms": v for k, v in self.latency_ms.items()},
        }


def wrk(
    base: str,
    mode: str,
    target: str,
    body_file: Path | str = "-",
    *,
    connections: int = 8,
    threads: int = 2,
    seconds: float = 10,
    limit: int = 0,
    rate: float = 0,
) -> WrkResult:
    """Run wrk against ``base``; ``limit`` and ``rate`` are totals, split over the threads."""
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkError("wrk not found; `make bench` installs it (Debian package wrk)")
    threads = max(1, min(threads, connections))
    marker_dir = tempfile.mkdtemp(prefix="wrk-")
    argv = [
        exe, f"--threads={threads}", f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s", "--timeout=10s", "--script", str(SCRIPT),
        base, "--", mode, target, str(body_file),
        str(-(-limit // threads) if limit else 0), str(rate / threads), marker_dir + "/t",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + seconds + 5
    while proc.poll() is None and time.monotonic() < deadline:
        if limit and len(list(Path(marker_dir).iterdir())) >= threads:
            proc.send_signal(signal.SIGINT)  # every thread is done: make wrk report now
            break
        time.sleep(0.02)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        shutil.rmtree(marker_dir, ignore_errors=True)
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise WrkError(f"wrk did not report (exit {proc.returncode}): {stderr[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],
        latency_ms={k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
    )
