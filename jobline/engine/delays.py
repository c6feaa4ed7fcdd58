"""Delayed jobs: when a job may start (``run_at`` / ``delay_seconds``) and who publishes it.

Why jobs far in the future are not published with a Celery ETA: on the Redis
transport a worker holds ETA messages in its own memory, and with late
acknowledgement a killed worker's ETA messages come back only after the
broker's visibility timeout (six hours here); an ETA beyond that timeout is even
delivered twice. So a job due later than :func:`horizon` is stored ``scheduled``
and ``held``, with no message at all, and the sweeper's ``release_due`` (on
every pass) publishes it shortly before its time, with an ETA of
``run_at``. A worker restart while a job waits therefore loses nothing: the
record in MongoDB is the only copy. Only a job within the horizon sits in a
worker's memory, and if that worker dies the sweeper republishes the job once it
is overdue. A job never starts early either way: the store's ``claim`` refuses a
scheduled job before its ``run_at``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    model_validator,
)

from jobline.core.settings import Settings
from jobline.store.records import Job, Status, now

log = logging.getLogger(__name__)

# The furthest ahead a job may be scheduled: beyond a year it is a schedule's job.
MAX_AHEAD = timedelta(days=366)


def _iso_text(value: object) -> object:
    # pydantic would read a number, or text of digits, as seconds since 1970.
    if not isinstance(value, str) or value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("run_at must be ISO 8601 text with a time zone, like 2030-01-01T12:00:00Z")
    return value


def _within_reach(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    if value - datetime.now(UTC) > MAX_AHEAD:
        raise ValueError(f"run_at may be at most {MAX_AHEAD.days} days ahead")
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


# ISO 8601 with a time zone ("2030-01-01T12:00:00Z"); a time in the past means now.
RunAt = Annotated[
    AwareDatetime,
    Field(description="When the job may start: ISO 8601 with a time zone"),
    BeforeValidator(_iso_text),
    AfterValidator(_within_reach),
]
DelaySeconds = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_AHEAD.total_seconds(),
        allow_inf_nan=False,
        strict=True,  # a number, not a string that looks like one
        description="Seconds from now before the job may start",
    ),
]


class When(BaseModel):
    """When a job may start: ``run_at`` or ``delay_seconds`` (not both), or now.

    Request models inherit it to accept both fields, validated the same everywhere.
    """

    run_at: RunAt | None = None
    delay_seconds: DelaySeconds | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self


def horizon(settings: Settings) -> timedelta:
    """How far ahead a delayed job is handed to the broker: two sweeps and a second."""
    return timedelta(seconds=2 * settings.sweep_interval_seconds + 1)


def holds(job: Job, settings: Settings) -> bool:
    """Whether a new job is too far in the future to publish now (see the module doc)."""
    run_at = job.get("run_at")
    return (
        job["status"] == Status.SCHEDULED
        and run_at is not None
        and run_at > now() + horizon(settings)
    )
