"""A job that does nothing and returns at once: for measuring the pipeline itself."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from jobline.jobs import Context, job_type


class NoopParams(BaseModel):
    """No parameters."""

    model_config = ConfigDict(extra="forbid")


@job_type("noop", params=NoopParams, soft_time_limit=10, time_limit=20, pure=True)
def noop(ctx: Context, params: NoopParams) -> None:
    """Returns at once with no result. Safe to run twice."""
