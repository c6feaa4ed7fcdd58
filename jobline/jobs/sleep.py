"""A job that sleeps, reporting progress at every step: for demos and tests."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from jobline.jobs import Context, job_type

log = logging.getLogger(__name__)

MAX_SECONDS = 600


class SleepParams(BaseModel):
    """How long to sleep, and in how many steps."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS, description="total seconds")] = 1.0
    steps: Annotated[int, Field(ge=1, le=1000, description="progress reports")] = 10


class SleepResult(BaseModel):
    slept: float


@job_type(
    "sleep",
    params=SleepParams,
    result=SleepResult,
    soft_time_limit=MAX_SECONDS + 30,
    time_limit=MAX_SECONDS + 60,
    pure=True,
)
def sleep(ctx: Context, params: SleepParams) -> SleepResult:
    """Sleeps for ``seconds``, reporting progress after each of ``steps``. Safe to run twice."""
    started = time.monotonic()
    for step in range(params.steps):
        time.sleep(params.seconds / params.steps)
        log.info("step %d of %d done", step + 1, params.steps)
        ctx.progress((step + 1) / params.steps, f"step {step + 1} of {params.steps}")
    return SleepResult(slept=round(time.monotonic() - started, 3))
