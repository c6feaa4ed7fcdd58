"""The sweeper: finds jobs whose worker vanished or whose message was lost, and hands them on.

Safe to run in several places at once: every change it makes is a conditional
update, and a message published twice is claimed once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import timedelta

from jobline.core import ids
from jobline.core.errors import BrokerUnavailable, StoreUnavailable, UnknownJobType
from jobline.core.logs import job_fields
from jobline.engine import delays, events, limits, queue, retention
from jobline.engine.pipeline import Pipeline
from jobline.engine.workflows import repair as workflows_repair
from jobline.store.records import Job, now

log = logging.getLogger(__name__)

# Held jobs released with one bulk write, and at most this many such writes a pass.
RELEASE_CHUNK = 500
MAX_RELEASE_CHUNKS = 100


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
    for job in list(p.store.expired_leases()):
        task_id = ids.new_id()
        if p.store.requeue(job, task_id):
            log.warning(
                "job %s lost its worker (attempt %s); requeued",
                job["_id"],
                job["attempts"],
                extra=job_fields(job),
            )
            events.job_changed(p.settings, job, "queued")
            _publish(p, {**job, "task_id": task_id, "run_at": None})
            done["requeued"] += 1
    older_than = timedelta(seconds=p.settings.requeue_after_seconds)
    # A backlog is not a loss: republish only jobs whose queue has drained. Asking
    # the broker first spares MongoDB reading a backlog's every job each pass.
    drained = [name for name in _queues(p) if queue.queue_depth(p.celery, name) == 0]
    for job in list(p.store.stale_waiting(older_than, drained) if drained else []):
        task_id = ids.new_id()
        if p.store.touch(job, task_id):
            log.warning(
                "job %s waited %s unclaimed; republished",
                job["_id"],
                older_than,
                extra=job_fields(job),
            )
            _publish(p, {**job, "task_id": task_id, "run_at": None})
            done["republished"] += 1
    done.update(retention.sweep(p.settings, p.store.db))
    return done


def _queues(p: Pipeline) -> list[str]:
    return sorted({queue.DEFAULT_QUEUE} | {job_type.queue for job_type in p.catalogue})


def release_due(p: Pipeline) -> int:
    """Publish held jobs due within the horizon; returns how many. Safe to run concurrently.

    Every due job in one pass, RELEASE_CHUNK to a bulk write and their messages
    in batches: a night's batch of 10,000 jobs due at 09:00 must not start a
    chunk a sweep.
    """
    released = 0
    until = now() + delays.horizon(p.settings)
    for _ in range(MAX_RELEASE_CHUNKS):
        due = list(p.store.held_until(until, limit=RELEASE_CHUNK))
        sendable = []
        for job in p.store.release_many([(job, ids.new_id()) for job in due]):
            try:
                sendable.append((job, p.catalogue.get(job["type"])))
            except UnknownJobType:
                log.error(
                    "job %s has unknown type %s; left for an operator", job["_id"], job["type"]
                )
        sent, error = queue.publish_many(p.celery, sendable)
        released += sent
        if error is not None:
            # The sweeper republishes waiting jobs whose message went missing.
            log.warning("could not publish %d due jobs: %s", len(sendable) - sent, error)
            break
        if len(due) < RELEASE_CHUNK:
            break
    return released


def _publish(p: Pipeline, job: Job) -> None:
    try:
        queue.publish(p.celery, job, p.catalogue.get(job["type"]))
    except UnknownJobType:
        log.error("job %s has unknown type %s; left for an operator", job["_id"], job["type"])


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
