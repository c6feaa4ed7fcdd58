"""Job types for the deployment tests, loaded through JOBLINE_JOB_MODULES."""

from __future__ import annotations

import os
import socket
import time

from pydantic import BaseModel, ConfigDict, Field

from jobline.jobs import Context, job_type


class Nap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=0.05, ge=0, le=60)
    # A file each finished run appends "job attempt host" to, to count runs.
    ledger: str | None = None


@job_type("deploy_nap", params=Nap, soft_time_limit=120, time_limit=150)
def nap(ctx: Context, params: Nap) -> dict[str, object]:
    """Sleeps in small steps, reporting progress; returns where it ran. Safe to run twice."""
    steps = max(1, int(params.seconds / 0.05))
    for step in range(steps):
        time.sleep(params.seconds / steps)
        ctx.progress((step + 1) / steps)
    host = socket.gethostname()
    if params.ledger:
        line = f"{ctx.job_id} {ctx.attempt} {host}\n".encode()
        fd = os.open(params.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one short O_APPEND write: lines never interleave
        finally:
            os.close(fd)
    return {"host": host, "attempt": ctx.attempt}
