"""Recurring schedules: a job type and params submitted on a cron or an interval.

Celery beat with RedBeat's scheduler does the timing: each schedule is a
RedBeat entry in Redis, shared by every beat process (one holds RedBeat's lock
and fires, the others wait), so schedules added through the API are picked up
without a restart. A due entry sends the task ``jobline.schedule_fire``, which a
worker runs: it reads the schedule's record in MongoDB and submits an ordinary
job carrying ``schedule_id``. MongoDB is the truth of which schedules exist: a
fire for a deleted schedule does nothing, and ``jobline beat`` brings RedBeat in
line with MongoDB when it starts. A fire is acknowledged on receipt: a worker
killed mid-fire skips that one run rather than risking two jobs for it, as cron
would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from celery import Celery
from celery.schedules import BaseSchedule, crontab, schedule
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, ensure_conf, get_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobline.core.errors import Unavailable, UnknownJobType
from jobline.core.settings import Settings
from jobline.engine.destinations import ForbiddenDestination
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import DEFAULT_QUEUE
from jobline.engine.webhooks import CallbackUrl, WebhooksNotConfigured, check_callback
from jobline.store.paging import Page
from jobline.store.schedules import Schedule, ScheduleStore, new_schedule

log = logging.getLogger(__name__)

FIRE_TASK = "jobline.schedule_fire"
KEY_PREFIX = "jobline:redbeat:"
ENTRY_PREFIX = "schedule:"
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
CRON_FIELDS = "minute hour day-of-month month day-of-week"


class SchedulerUnavailable(Unavailable):
    """Redis, where RedBeat keeps the schedules' timing, cannot be reached."""

    title = "Scheduler unavailable"


def parse_cron(expression: str, app: Celery | None = None) -> crontab:
    """A five-field cron expression in UTC as a Celery crontab; ValueError saying what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has five fields ({CRON_FIELDS}), not {len(fields)}")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        timing = crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
            app=app,
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None
    if _cron_after(timing, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"the cron expression {expression!r} never occurs")
    return timing


# Leap days recur within eight years; a date that matches nowhere in that span never will.
_CRON_HORIZON_DAYS = 8 * 366


def _cron_after(timing: crontab, after: datetime) -> datetime | None:
    """The first minute after ``after`` (UTC) that ``timing`` matches; None if there is none.

    Computed from the crontab's expanded fields rather than its remaining_delta,
    whose answer depends on the Celery release (and on the wall clock).
    """
    start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.date()
    for _ in range(_CRON_HORIZON_DAYS):
        if (
            day.month in timing.month_of_year
            and day.day in timing.day_of_month
            and day.isoweekday() % 7 in timing.day_of_week  # crontab counts Sunday as 0
        ):
            earliest = (start.hour, start.minute) if day == start.date() else (0, 0)
            for hour in sorted(timing.hour):
                for minute in sorted(timing.minute):
                    if (hour, minute) >= earliest:
                        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
        day += timedelta(days=1)
    return None


class ScheduleSpec(BaseModel):
    """What a client asks for: a job type, its params, and a cron or an interval."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    params: dict[str, Any] = Field(default_factory=dict)
    cron: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="five fields, in UTC, e.g. '*/5 * * * *'"
    )
    interval_seconds: Annotated[int, Field(ge=1, le=MAX_INTERVAL_SECONDS, strict=True)] | None = (
        None
    )
    callback_url: CallbackUrl | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_cron(value)
        return " ".join(value.split())

    @model_validator(mode="after")
    def _cron_or_interval(self) -> Self:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        return self


# How soon beat looks again after a tick that could not reach Redis.
OUTAGE_RETRY_SECONDS = 5.0


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat's scheduler, riding out Redis outages instead of ending beat.

    RedBeat extends its lock at every tick without retrying, so one stall of
    Redis longer than the socket timeout raised out of beat and stopped it (and
    with it `jobline up`). Such a tick now waits and tries again. A lock lost
    meanwhile (it lapsed during the outage) is taken back if it is free;
    otherwise another beat leads and this one waits, as at its start.
    """

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("beat: Redis unreachable (%s); trying again", type(exc).__name__)
            return OUTAGE_RETRY_SECONDS
        except LockNotOwnedError:
            try:
                if self.lock.acquire(blocking=False):
                    log.warning("beat: the lock lapsed during an outage and is taken back")
                    return 0.0
            except RedisError:
                pass
            return float(self.max_interval)


def configure(app: Celery, settings: Settings, *, retry_forever: bool = False) -> None:
    """Point RedBeat (and beat) at Redis; the API fails fast, beat rides out outages."""
    timeout = settings.connect_timeout_seconds
    options: dict[str, Any] = {
        "socket_timeout": max(timeout, 5.0),
        "socket_connect_timeout": timeout,
    }
    if retry_forever:
        options["retry_period"] = -1
    app.conf.update(
        beat_scheduler=f"{__name__}:Scheduler",
        beat_max_loop_interval=settings.beat_max_loop_seconds,
        redbeat_redis_url=settings.redis_url,
        redbeat_key_prefix=KEY_PREFIX,
        redbeat_redis_options=options,
    )
    ensure_conf(app)


def timing(record: Schedule, app: Celery | None = None) -> BaseSchedule:
    """The Celery schedule of a record: its crontab or its interval."""
    if record.get("cron"):
        return parse_cron(record["cron"], app)
    return schedule(run_every=timedelta(seconds=record["interval_seconds"]), app=app)


def next_run(timing: BaseSchedule, last_run_at: datetime) -> datetime:
    """The first time after ``last_run_at`` that ``timing`` falls due (RedBeat's due_at drifts)."""
    if isinstance(timing, crontab):
        due = _cron_after(timing, last_run_at)
        if due is None:  # parse_cron refuses such expressions
            raise ValueError("the cron expression never occurs")
        return due
    return last_run_at + timing.run_every  # type: ignore[attr-defined,no-any-return]


@dataclass
class Schedules:
    """Creating, listing and deleting schedules: the MongoDB record and the RedBeat entry."""

    pipeline: Pipeline
    store: ScheduleStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = ScheduleStore(self.pipeline.store.db)

    @property
    def app(self) -> Celery:
        return self.pipeline.celery

    def create(self, spec: ScheduleSpec, owner: str | None = None) -> Schedule:
        """Validate params with the job type's model, record the schedule, start its timing.

        Raises UnknownJobType, pydantic's ValidationError (params), WebhooksNotConfigured,
        ForbiddenDestination.
        """
        job_type = self.pipeline.catalogue.get(spec.type)
        params = job_type.validate_params(spec.params).model_dump(mode="json")
        if spec.callback_url:
            check_callback(self.pipeline.settings, spec.callback_url)
        record = new_schedule(
            {
                "type": spec.type,
                "params": params,
                "cron": spec.cron,
                "interval_seconds": spec.interval_seconds,
                "callback_url": spec.callback_url,
                # The jobs it fires are this owner's too.
                "owner": owner,
            }
        )
        self.store.insert(record)
        try:
            self._entry(record, last_run_at=record["created_at"]).save()
        except RedisError as exc:
            self.store.delete(record["_id"])
            raise SchedulerUnavailable(f"Redis unreachable: {type(exc).__name__}") from exc
        return record

    def get(self, schedule_id: str, owner: str | None = None) -> Schedule:
        return self.store.get(schedule_id, owner)

    def list(self, *, limit: int = 50, cursor: str | None = None, owner: str | None = None) -> Page:
        return self.store.list(limit=limit, cursor=cursor, owner=owner)

    def delete(self, schedule_id: str, owner: str | None = None) -> None:
        """Remove the record (fires stop at once), then the RedBeat entry (best effort)."""
        self.store.delete(schedule_id, owner)
        try:
            self._drop_entry(schedule_id)
        except RedisError as exc:  # its fires find no record; beat drops it when it starts
            log.warning("could not remove the beat entry of schedule %s: %s", schedule_id, exc)

    def next_run_at(self, schedule_id: str) -> datetime | None:
        """When RedBeat will next fire the schedule; None if it has no entry (yet)."""
        try:
            entry = RedBeatSchedulerEntry.from_key(self._key(schedule_id), app=self.app)
        except KeyError:
            return None
        except RedisError as exc:
            raise SchedulerUnavailable(f"Redis unreachable: {type(exc).__name__}") from exc
        return next_run(entry.schedule, entry.last_run_at)

    def sync(self) -> tuple[int, int]:
        """Make RedBeat's entries match MongoDB's records; returns (added, removed)."""
        # Redis first: a schedule created meanwhile then looks missing (and is
        # saved again, harmlessly), never orphaned (which would delete it).
        redis = get_redis(self.app)
        prefix = self._key("")
        entries = {
            key.removeprefix(prefix)
            for key in redis.zrange(self.app.redbeat_conf.schedule_key, 0, -1)
            if key.startswith(prefix)
        }
        records = set(self.store.all_ids())
        for schedule_id in records - entries:
            record = self.store.find(schedule_id)
            if record is not None:
                last = record.get("last_fired_at") or record["created_at"]
                self._entry(record, last_run_at=last).save()
        for schedule_id in entries - records:
            self._drop_entry(schedule_id)
        return len(records - entries), len(entries - records)

    def _key(self, schedule_id: str) -> str:
        return f"{self.app.redbeat_conf.key_prefix}{ENTRY_PREFIX}{schedule_id}"

    def _entry(self, record: Schedule, last_run_at: datetime) -> RedBeatSchedulerEntry:
        return RedBeatSchedulerEntry(
            name=f"{ENTRY_PREFIX}{record['_id']}",
            task=FIRE_TASK,
            schedule=timing(record, self.app),
            args=[record["_id"]],
            options={"queue": DEFAULT_QUEUE},
            last_run_at=last_run_at,
            app=self.app,
        )

    def _drop_entry(self, schedule_id: str) -> None:
        redis = get_redis(self.app)
        key = self._key(schedule_id)
        with redis.pipeline() as pipe:
            pipe.zrem(self.app.redbeat_conf.schedule_key, key)
            pipe.delete(key)
            pipe.execute()


def fire(p: Pipeline, schedule_id: str) -> str | None:
    """Submit the schedule's job now; returns its id, or None if nothing was submitted."""
    store = ScheduleStore(p.store.db)
    record = store.find(schedule_id)
    if record is None:
        log.info("schedule %s is gone; fire skipped", schedule_id)
        return None
    extra: dict[str, Any] = {"schedule_id": schedule_id}
    if record.get("callback_url"):
        extra["callback_url"] = record["callback_url"]
    try:
        job = p.submit(record["type"], record["params"], extra=extra, owner=record.get("owner"))
    except (
        UnknownJobType,
        PydanticValidationError,
        WebhooksNotConfigured,
        ForbiddenDestination,
    ) as exc:
        # The catalogue changed since the schedule was made; say so on the schedule.
        log.error("schedule %s could not submit its job: %s", schedule_id, exc)
        store.fired(schedule_id, None, error=f"{type(exc).__name__}: {exc}"[:2000])
        return None
    try:
        store.fired(schedule_id, job["_id"])
    except Unavailable as exc:  # the job is in; retrying the fire would submit another
        log.warning("could not note the fire of schedule %s: %s", schedule_id, exc)
    return str(job["_id"])
