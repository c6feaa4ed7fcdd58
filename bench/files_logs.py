"""Files and job logs: a 50 MB file through the API and GridFS, and what one logged line costs.

Files go over real HTTP to `jobline api` (a streamed multipart upload, then a
streamed download, the bytes checked by SHA-256) and into GridFS on the
embedded MongoDB server. A logged line is measured where a job pays for it:
in the job's own process, through the same capture the worker installs
(handler, scrubbing, buffer), with its flusher writing to the same server;
once for lines kept and once for lines past the cap, which are only counted.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import CpuMeter
from bench.workloads import Bench
from jobline.core.ids import new_id
from jobline.engine import joblog
from jobline.store.logs import LogStore

MB = 1024 * 1024


def _make_file(path: Path, megabytes: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(MB)
    with path.open("wb") as f:
        for _ in range(megabytes):
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def file_throughput(b: Bench, megabytes: int) -> dict[str, Any]:
    """Upload then download one file of ``megabytes`` MB; MB/s each way and CPU by process."""
    path = b.scratch / "upload.bin"
    sha256 = _make_file(path, megabytes)
    cpu = CpuMeter(b.pids()).start()
    with httpx.Client(base_url=b.base + "/api/v1", timeout=600) as http:
        started = time.monotonic()
        with path.open("rb") as f:
            response = http.post("/files", files={"file": ("upload.bin", f, "application/zip")})
        up = time.monotonic() - started
        response.raise_for_status()
        record = response.json()
        assert record["sha256"] == sha256, "the stored file differs from the one sent"
        digest, started = hashlib.sha256(), time.monotonic()
        with http.stream("GET", f"/files/{record['id']}/content") as download:
            for chunk in download.iter_bytes(MB):
                digest.update(chunk)
        down = time.monotonic() - started
        assert digest.hexdigest() == sha256, "the downloaded file differs from the one sent"
        http.delete(f"/files/{record['id']}").raise_for_status()
    cpu.stop()
    path.unlink()
    return {
        "megabytes": megabytes,
        "upload_s": round(up, 2),
        "upload_mb_per_s": round(megabytes / up, 1),
        "download_s": round(down, 2),
        "download_mb_per_s": round(megabytes / down, 1),
        "cpu_s": {name: round(s, 2) for name, s in cpu.spent.items()},
    }


def _print_lines(b: Bench, lines: int, budget: int) -> dict[str, float]:
    """Print ``lines`` lines under capture; µs a line in the job, and until all are stored."""
    settings = b.servers.settings().model_copy(update={"job_log_max_bytes": budget})
    job: dict[str, Any] = {"_id": new_id(), "attempts": 1, "owner": None}
    started = time.perf_counter()
    with joblog.capture(settings, b.store.db, job) as captured:
        for i in range(lines):
            print(f"step {i}: aligned read {i} against the reference")
        in_job = time.perf_counter() - started
    stored = time.perf_counter() - started
    LogStore(b.store.db).forget([job["_id"]])
    return {
        "lines": lines,
        "kept": lines - captured.dropped,
        "us_per_line_in_job": round(in_job * 1e6 / lines, 2),
        # The write's share: one insert_many of every kept line, after the job's own time.
        "us_per_line_stored": round((stored - in_job) * 1e6 / max(1, lines - captured.dropped), 2),
    }


def log_cost(b: Bench, lines: int) -> dict[str, Any]:
    """What a logged line costs a job when it is kept, and when it is past the cap."""
    return {
        "kept": _print_lines(b, lines, budget=lines * 200),
        "past_the_cap": _print_lines(b, lines * 20, budget=10_000),
    }


def table(results: dict[str, Any]) -> str:
    """The files and logs figures, as lines under the main table."""
    out = []
    files = results.get("files")
    if files:
        out.append(
            f"file of {files['megabytes']} MB: upload {files['upload_mb_per_s']} MB/s "
            f"({files['upload_s']} s), download {files['download_mb_per_s']} MB/s "
            f"({files['download_s']} s)"
        )
    logs = results.get("logs")
    if logs:
        kept, dropped = logs["kept"], logs["past_the_cap"]
        out.append(
            f"a logged line: {kept['us_per_line_in_job']} µs in the job, "
            f"then {kept['us_per_line_stored']} µs to store it ({kept['lines']} lines); "
            f"past the cap {dropped['us_per_line_in_job']} µs ({dropped['lines']} lines)"
        )
    return "\n".join(out)
