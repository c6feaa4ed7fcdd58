"""Fair shares: at most so many running jobs per owner (JOBLINE_OWNER_MAX_RUNNING) and per
job type (``max_running``), counted in Redis across every worker.

Each limit is a sorted set of the slots held under it (holder → lease expiry,
Redis's own clock), taken with one Lua script before the store's ``claim``, so
a delivery over a limit costs no attempt. It is parked, not retried: its
message (the job's id, task id, queue and priority) goes onto the limit's wait
list in the same script, the delivery is acknowledged, and the record says
why it waits (``held_reason``, written once per hold). Releasing a slot, which
every end of an attempt does, wakes the next parked job by publishing its
message again. A holder that dies stops renewing (the heartbeat renews), its
slot expires within a lease, and the sweeper wakes whoever waits for it.

A job under no limit never reaches Redis. A parked job is not lost while it
waits, so the sweeper's republishing of lost messages passes it by (a copy
would be a second place in the line). A wake-up is kept in a set of wakes
under way (``jobline:limits:waking``) from the moment it leaves the wait list
until its message is published, so one lost with its process is published
again by the next sweep after WAKE_GRACE_SECONDS. A delivery dropped as
redundant, or one whose job no longer waits (cancelled while it was parked),
passes its wake-up on to the next job waiting; one whose job was deleted, whose
limits are no longer known, wakes the next wherever a limit has room.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery

from jobline.core.errors import BrokerUnavailable, UnknownJobType
from jobline.core.settings import Settings
from jobline.engine import queue
from jobline.jobs import Catalogue
from jobline.store.records import Job

log = logging.getLogger(__name__)

PREFIX = "jobline:limit:"
# Every limit that has held a slot or a waiter (with the size it had then, for an
# operator's eye): what the sweeper wakes, sizing each as configured now.
REGISTRY = "jobline:limits"
# Wakes taken off a wait list and not yet published (message → when, in ms).
WAKING = "jobline:limits:waking"
# A wake still unpublished after this long lost its process: the sweep publishes it.
WAKE_GRACE_SECONDS = 30
# Jobs without an owner (auth off) share one.
NO_OWNER = "-"
# The size of a limit that is no longer configured: every job parked under it goes.
UNLIMITED = 2**31 - 1

# KEYS: per limit its slots and its wait list, then the registry.
# ARGV: holder, lease (ms), the parked message, then each limit's size.
# Returns 0 (slots taken), -1 (this holder already has them: another delivery
# of the same attempt), or the 1-based number of the first full limit (parked).
_ACQUIRE = """
local n = (#KEYS - 1) / 2
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 1, n do
  local slots = KEYS[2 * i - 1]
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZSCORE', slots, ARGV[1]) then return -1 end
  if redis.call('ZCARD', slots) >= tonumber(ARGV[3 + i]) then
    redis.call('RPUSH', KEYS[2 * i], ARGV[3])
    redis.call('HSET', KEYS[#KEYS], slots, ARGV[3 + i])
    return i
  end
end
for i = 1, n do
  local slots = KEYS[2 * i - 1]
  redis.call('ZADD', slots, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', slots, ARGV[2])
  redis.call('HSET', KEYS[#KEYS], slots, ARGV[3 + i])
end
return 0
"""

# KEYS: slot sets. ARGV: holder, lease (ms). Renews the holder's slots it still has.
_RENEW = """
local t = redis.call('TIME')
local until_ = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
local renewed = 0
for _, slots in ipairs(KEYS) do
  if redis.call('ZSCORE', slots, ARGV[1]) then
    redis.call('ZADD', slots, until_, ARGV[1])
    redis.call('PEXPIRE', slots, ARGV[2])
    renewed = renewed + 1
  end
end
return renewed
"""

# KEYS: per limit its slots and its wait list, then the wakes under way. ARGV:
# holder ('' for none), then each limit's size. Frees the holder's slots, drops
# expired ones, and moves as many parked messages from each wait list to the
# wakes under way as that limit has room for.
_RELEASE = """
local n = (#KEYS - 1) / 2
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local woken = {}
for i = 1, n do
  local slots, waiting = KEYS[2 * i - 1], KEYS[2 * i]
  if ARGV[1] ~= '' then redis.call('ZREM', slots, ARGV[1]) end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local room = tonumber(ARGV[1 + i]) - redis.call('ZCARD', slots)
  while room > 0 do
    local message = redis.call('LPOP', waiting)
    if not message then break end
    redis.call('ZADD', KEYS[#KEYS], now, message)
    woken[#woken + 1] = message
    room = room - 1
  end
end
return woken
"""

# KEYS: a limit's slots and wait list, then the registry. Forgets an idle limit,
# in one step so that a slot taken meanwhile keeps it registered.
_FORGET = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  return redis.call('HDEL', KEYS[3], KEYS[1])
end
return 0
"""


@functools.cache
def _client(url: str) -> redis.Redis:
    # redis-py's pool reconnects after a fork, so one client per URL serves every process.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


@functools.cache
def _scripts(url: str) -> dict[str, Any]:
    client = _client(url)
    return {
        "acquire": client.register_script(_ACQUIRE),
        "renew": client.register_script(_RENEW),
        "release": client.register_script(_RELEASE),
        "forget": client.register_script(_FORGET),
    }


@dataclass(frozen=True)
class Limit:
    """One limit a job is under: its slot set in Redis, its size, and why it holds jobs."""

    key: str
    size: int
    reason: str

    @property
    def waiting(self) -> str:
        return f"{self.key}:waiting"


class Held(Exception):  # noqa: N818 - a delivery held back, not an error
    """A delivery over a limit: parked on the limit's wait list, to run when a slot frees."""

    def __init__(self, job: Job, limit: Limit) -> None:
        super().__init__(limit.reason)
        self.job = job
        self.reason = limit.reason


class Redundant(Exception):  # noqa: N818 - a redundant delivery, not an error
    """Another delivery of the job has its place: it holds the slots, or it was published
    since (the record names another task id), so this one is dropped rather than parked."""


@dataclass
class Limits:
    """The limits of one worker (or sweeper): which apply to a job, and Redis's count of them."""

    settings: Settings
    catalogue: Catalogue

    def __post_init__(self) -> None:
        self.owner_max = self.settings.owner_max_running
        self.any = bool(self.owner_max) or any(t.max_running for t in self.catalogue)

    @property
    def redis(self) -> redis.Redis:
        return _client(self.settings.redis_url)

    @property
    def scripts(self) -> dict[str, Any]:
        return _scripts(self.settings.redis_url)

    @property
    def lease_ms(self) -> int:
        return int(self.settings.lease_seconds * 1000)

    def of(self, job: Job) -> list[Limit]:
        """The limits ``job`` runs under; empty (and no Redis call ever) when none are set."""
        if not self.any:
            return []
        found: list[Limit] = []
        if self.owner_max:
            owner = job.get("owner")
            who = f"owner {owner} has" if owner else "jobs without an owner have"
            found.append(
                Limit(
                    f"{PREFIX}owner:{owner or NO_OWNER}",
                    self.owner_max,
                    f"{who} {self.owner_max} running "
                    "(JOBLINE_OWNER_MAX_RUNNING); waits for one to end",
                )
            )
        try:
            size = self.catalogue.get(job["type"]).max_running
        except UnknownJobType:
            size = None
        if size:
            found.append(
                Limit(
                    f"{PREFIX}type:{job['type']}",
                    size,
                    f"type {job['type']} has {size} running (max_running); waits for one to end",
                )
            )
        return found

    def wake_all(self, celery: Celery) -> int:
        """Publish parked jobs wherever a limit has room (slots expired, the limit raised or
        turned off since they were parked); returns how many."""
        try:
            cutoff = (time.time() - WAKE_GRACE_SECONDS) * 1000
            stuck: list[bytes] = self.redis.zrangebyscore(WAKING, "-inf", cutoff)  # type: ignore[assignment]
            return self.wake(celery, stuck) + self.wake_where_room(celery)
        except redis.RedisError as exc:
            log.warning("could not look at the limits' wait lists: %s", exc)
            return 0

    def wake_where_room(self, celery: Celery) -> int:
        """Publish parked jobs under every limit that has room, and forget idle limits;
        RedisError when Redis cannot be reached.

        Each limit is sized as it is configured now, not as it was when its jobs
        were parked: jobs parked under a limit since turned off all go.
        """
        woken = 0
        registered: list[bytes] = self.redis.hkeys(REGISTRY)  # type: ignore[assignment]
        for raw_key in registered:
            key = raw_key.decode()
            limit = Limit(key, self._size_now(key) or UNLIMITED, "")
            woken += self.wake(celery, self.release_slots([limit], ""))
            self.scripts["forget"](keys=[limit.key, limit.waiting, REGISTRY])
        return woken

    def _size_now(self, key: str) -> int | None:
        """The size this process's settings give a registered limit; None for no limit."""
        kind, _, name = key.removeprefix(PREFIX).partition(":")
        if kind == "owner":
            return self.owner_max or None
        try:
            return self.catalogue.get(name).max_running or None
        except UnknownJobType:
            return None

    def give_back(self, celery: Celery, job: Job) -> None:
        """Release the slots of ``job``'s current attempt, for a process that was killed
        while holding them (a hard time limit); best effort."""
        limits = self.of(job)
        if not limits:
            return
        try:
            self.wake(celery, self.release_slots(limits, f"{job['_id']}:{job['attempts']}"))
        except redis.RedisError:
            log.warning("could not release the slots of job %s; they expire", job["_id"])

    def release_slots(self, limits: list[Limit], holder: str) -> list[bytes]:
        """Free ``holder``'s slots (and expired ones); the parked messages now let through."""
        keys = [k for limit in limits for k in (limit.key, limit.waiting)] + [WAKING]
        sizes = [limit.size for limit in limits]
        return list(self.scripts["release"](keys=keys, args=[holder, *sizes]))

    def wake(self, celery: Celery, messages: Iterable[bytes]) -> int:
        """Publish parked messages again; returns how many went out."""
        published = 0
        for raw in messages:
            parked = json.loads(raw)
            try:
                queue.publish(celery, parked, self.catalogue.get(parked["type"]))
            except (BrokerUnavailable, UnknownJobType) as exc:
                # Left among the wakes under way: a later sweep publishes it.
                log.warning("could not wake job %s: %s", parked["_id"], exc)
                continue
            self.redis.zrem(WAKING, raw)
            published += 1
        return published

    def pass_on(self, celery: Celery, job_id: str, job: Job | None) -> None:
        """Wake whoever waits under ``job``'s limits, for a delivery dropped without a slot
        (a stale copy of a parked job may have used up the wake-up meant for the next);
        under every limit with room when the job is gone (deleted while it was parked)."""
        try:
            if job is None:
                self.wake_where_room(celery)
            elif limits := self.of(job):
                self.wake(celery, self.release_slots(limits, ""))
        except redis.RedisError:
            log.warning("could not pass on the wake of job %s; the sweep does", job_id)


@dataclass
class Gate:
    """One delivery's passage through the limits: take slots before the claim, keep them
    while the attempt runs, give them back (and wake the next job) however it ends."""

    limits: Limits
    celery: Celery
    task_id: str
    held: list[Limit] = field(default_factory=list)
    holder: str = ""
    _renewed: float = 0.0

    def __call__(self, job: Job) -> None:
        """Take a slot under every limit of ``job``, or raise Held (parked) or Redundant."""
        limits = self.limits.of(job)
        if not limits:
            return
        if job.get("task_id") not in (None, self.task_id):
            self.limits.pass_on(self.celery, job["_id"], job)
            raise Redundant(job["_id"])
        # One holder per attempt, so a duplicate delivery of that attempt is recognised.
        holder = f"{job['_id']}:{job['attempts'] + 1}"
        parked = json.dumps(
            {
                "_id": job["_id"],
                "type": job["type"],
                "task_id": self.task_id,
                "queue": job.get("queue"),
                "priority": job.get("priority"),
            }
        )
        keys = [k for limit in limits for k in (limit.key, limit.waiting)] + [REGISTRY]
        args = [holder, self.limits.lease_ms, parked, *[limit.size for limit in limits]]
        full = int(self.limits.scripts["acquire"](keys=keys, args=args))
        if full == -1:
            raise Redundant(job["_id"])
        if full:
            raise Held(job, limits[full - 1])
        self.held, self.holder = limits, holder
        self._renewed = time.monotonic()

    def renew(self) -> None:
        """Extend the slots' lease; called by the heartbeat, at most every third of a lease."""
        if (
            not self.held
            or time.monotonic() - self._renewed < self.limits.settings.lease_seconds / 3
        ):
            return
        self._renewed = time.monotonic()
        keys = [limit.key for limit in self.held]
        try:
            self.limits.scripts["renew"](keys=keys, args=[self.holder, self.limits.lease_ms])
        except redis.RedisError:  # a missed renewal is retried; the lease has slack
            log.warning("could not renew the slots of %s", self.holder, exc_info=True)

    def release(self) -> None:
        """Give the slots back and wake the jobs waiting for them; best effort."""
        if not self.held:
            return
        held, self.held = self.held, []
        try:
            self.limits.wake(self.celery, self.limits.release_slots(held, self.holder))
        except redis.RedisError:
            log.warning("could not release the slots of %s; they expire", self.holder)
