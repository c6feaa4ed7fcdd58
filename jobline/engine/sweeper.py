"""The sweeper: finds jobs whose worker vanished or whose message was lost, and hands them on.

Safe to run in several places at once: every change it makes is a conditional
update, and a message published twice is claimed once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial

from jobline.core import ids
from jobline.core.errors import BrokerUnavailable, StoreUnavailable, UnknownJobType
from jobline.core.logs import job_fields
from jobline.engine import delays, events, limits, queue, retention
from jobline.engine.pipeline import Pipeline
from jobline.engine.workflows import repair as workflows_repair
from jobline.store.records import Job, now

log = logging.getLogger(__name__)

# Jobs handed on with one bulk write, and at most this many such writes a pass.
CHUNK = 500
MAX_CHUNKS = 100
# Jobs a pass names in a warning of their own for each kind of hand-on; the
# rest of a purge or a lost fleet are counted in one line, not thousands.
NAMED_A_PASS = 20


def sweep_once(p: Pipeline) -> Counter[str]:
    """One pass; returns how many jobs were requeued and republished."""
    done: Counter[str] = Counter()
    if released := release_due(p):  # delayed jobs now due
        done["released"] = released
    # Workflows a crash left behind: a step ended but its successors were never released.
    if looked_at := workflows_repair.repair(p.progression(inline=True)):
        done["workflows"] = looked_at
    # Jobs parked behind a limit whose holder died: its slot has expired.
    if woken := limits.Limits(p.settings, p.catalogue).wake_all(p.celery):
        done["woken"] = woken
    lost = _Told(partial(_requeued, p), "lost their worker; requeued")
    if requeued := _hand_on_all(p, p.store.expired_leases, p.store.requeue_many, lost, due=True):
        done["requeued"] = requeued
    lost.summarise()
    older_than = timedelta(seconds=p.settings.requeue_after_seconds)
    # A backlog is not a loss: republish only jobs whose queue has drained. Asking
    # the broker first spares MongoDB reading a backlog's every job each pass.
    if drained := [name for name in _queues(p) if queue.queue_depth(p.celery, name) == 0]:
        stale = partial(p.store.stale_waiting, older_than, drained)
        unclaimed = _Told(
            partial(_republished, older_than), f"waited {older_than} unclaimed; republished"
        )
        republished = _hand_on_all(p, stale, p.store.touch_many, unclaimed, due=True)
        if republished:
            done["republished"] = republished
        unclaimed.summarise()
    done.update(retention.sweep(p.settings, p.store.db))
    return done


def _queues(p: Pipeline) -> list[str]:
    return sorted({queue.DEFAULT_QUEUE} | {job_type.queue for job_type in p.catalogue})


def release_due(p: Pipeline) -> int:
    """Publish held jobs due within the horizon; returns how many. Safe to run concurrently."""
    until = now() + delays.horizon(p.settings)
    return _hand_on_all(p, partial(p.store.held_until, until), p.store.release_many)


def _hand_on_all(
    p: Pipeline,
    find: Callable[..., Iterable[Job]],
    hand_on: Callable[[list[tuple[Job, str]]], list[Job]],
    said: Callable[[Job], None] | None = None,
    due: bool = False,
) -> int:
    """Hand on every job ``find`` finds, CHUNK to a bulk write, and send their messages.

    ``said`` is told of each job handed on; ``due``: its message runs it now,
    whatever its ``run_at`` was. Returns how many messages were sent. Every
    job in one pass: a night's batch of 10,000 jobs due at 09:00, or a queue
    an operator purged, must not wait a sweep interval for each few hundred.
    """
    sent = 0
    for _ in range(MAX_CHUNKS):
        found = list(find(limit=CHUNK))
        sendable = []
        for job in hand_on([(job, ids.new_id()) for job in found]):
            if said is not None:
                said(job)
            try:
                job_type = p.catalogue.get(job["type"])
            except UnknownJobType:
                log.error(
                    "job %s has unknown type %s; left for an operator", job["_id"], job["type"]
                )
                continue
            sendable.append(({**job, "run_at": None} if due else job, job_type))
        published, error = queue.publish_many(p.celery, sendable)
        sent += published
        if error is not None:
            # The sweeper republishes waiting jobs whose message went missing.
            log.warning("could not publish %d jobs: %s", len(sendable) - published, error)
            break
        if len(found) < CHUNK:
            break
    return sent


class _Told:
    """Tells ``tell`` of each job a pass hands on; past NAMED_A_PASS, only whether to log."""

    def __init__(self, tell: Callable[[Job, bool], None], what: str) -> None:
        self.tell, self.what, self.count = tell, what, 0

    def __call__(self, job: Job) -> None:
        self.count += 1
        self.tell(job, self.count <= NAMED_A_PASS)

    def summarise(self) -> None:
        if (unnamed := self.count - NAMED_A_PASS) > 0:
            log.warning("%d more jobs %s (not named one by one)", unnamed, self.what)


def _requeued(p: Pipeline, job: Job, named: bool) -> None:
    if named:
        log.warning(
            "job %s lost its worker (attempt %s); requeued",
            job["_id"],
            job["attempts"],
            extra=job_fields(job),
        )
    events.job_changed(p.settings, job, "queued")


def _republished(older_than: timedelta, job: Job, named: bool) -> None:
    if named:
        log.warning(
            "job %s waited %s unclaimed; republished", job["_id"], older_than, extra=job_fields(job)
        )


def run(p: Pipeline, interval: float, stop: threading.Event | None = None) -> None:
    """Sweep every ``interval`` seconds until ``stop`` is set; outages are waited out."""
    stop = stop or threading.Event()
    while not stop.is_set():
        sweep_safely(p)
        stop.wait(interval)


def sweep_safely(p: Pipeline) -> None:
    """One pass, logged; an outage or a bug is logged and waited out, never raised."""
    try:
        counts = sweep_once(p)
        if counts:
            log.info("sweep: %s", dict(counts))
    except (StoreUnavailable, BrokerUnavailable) as exc:
        log.warning("sweep skipped: %s", exc)
    except Exception:  # the sweeper is the safety net: it must outlive any one pass
        log.exception("sweep failed; trying again")
