"""Holding a running attempt: the heartbeat that renews its lease, and stopping it in place.

The heartbeat writes throttled progress and renews the lease; when the attempt
no longer owns the job (cancelled, or handed on by the sweeper) it tells the
``Interrupter``, which stops the job where it stands. A pure job's start may
be pending: the heartbeat writes it once the claim delay has passed, or at
once when the job first needs the store to know (progress, a log line, a
file); a job that ends before then has its start written with its result. One thread per process
(the ``Beats`` of that process) beats for every attempt running in it, so a
job costs no thread of its own: starting and stopping one per job cost a
worker process about a third of a millisecond a job.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobline.core.errors import JobCancelled
from jobline.store.jobs import JobStore

log = logging.getLogger(__name__)

# Progress is written at most this often; a tight loop must not hammer MongoDB.
PROGRESS_INTERVAL = 0.5
# The signal the heartbeat sends to a job that lost its job, to stop it where it stands.
STOP_SIGNAL = signal.SIGUSR2


# eq=False: each attempt's heartbeat is itself (hashed by identity in the process's Beats).
@dataclass(eq=False)
class Heartbeat:
    """Renews a running attempt's lease and writes its progress, throttled.

    Notices when the attempt no longer owns the job (it was cancelled, or the
    sweeper handed it on): the next progress report raises JobCancelled, and
    ``on_lost`` is called so that a job which never reports is stopped too.
    """

    store: JobStore
    job_id: str
    attempt: int
    interval: float
    on_lost: Callable[[], None] | None = None
    # Called after each progress write this attempt still owns (live views).
    on_progress: Callable[[float, str | None], None] | None = None
    # Called after each write this attempt still owns: whatever else its lease covers.
    on_beat: Callable[[], None] | None = None
    # The write of a start not yet recorded (True if this attempt got the job),
    # and when (time.monotonic()) the heartbeat writes it if nobody did before.
    pending_start: Callable[[], bool] | None = None
    start_by: float = 0.0
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pending: tuple[float, str | None] | None = None
    _last_write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _starting: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Heartbeat:
        # The claim has just written the lease, so the first beat and the first
        # progress write wait out their intervals: a job shorter than
        # PROGRESS_INTERVAL costs no MongoDB write beyond its claim and its result.
        self._last_write = time.monotonic()
        beats().add(self)
        return self

    def stop(self) -> None:
        self._stop.set()
        beats().discard(self)

    def record_start(self) -> bool:
        """Write a pending start now, once; False if this attempt did not get the job.

        True when no start is pending. A write that fails (MongoDB away) raises
        and leaves the start pending, for the next caller or beat.
        """
        with self._starting:
            write = self.pending_start
            if write is None:
                return True
            owned = write()
            self.pending_start = None
            self._last_write = time.monotonic()
        if not owned:
            self.lost.set()
        return owned

    def finish_unstarted(self) -> bool:
        """At the attempt's end: True if its start was never written, and now never will be."""
        with self._starting:
            write, self.pending_start = self.pending_start, None
        return write is not None

    def next_due(self) -> float:
        """Seconds until this heartbeat has something to do, at most its interval."""
        if self.pending_start is not None:
            return max(0.0, self.start_by - time.monotonic())
        return self.interval

    def report(self, fraction: float, message: str | None = None) -> None:
        if self.lost.is_set():
            raise JobCancelled(self.job_id)
        if self.pending_start is not None:
            try:
                self.record_start()
            except Exception:  # the beat writes it, and the progress, once MongoDB answers
                log.warning("could not record the start of job %s", self.job_id, exc_info=True)
            if self.lost.is_set():
                raise JobCancelled(self.job_id)
        with self._lock:
            self._pending = (fraction, message)
            due = time.monotonic() - self._last_write >= PROGRESS_INTERVAL
        if due and self.pending_start is None:
            self._write()
        if self.lost.is_set():
            raise JobCancelled(self.job_id)

    def _write(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            self._last_write = time.monotonic()
        fraction, message = pending if pending else (None, None)
        try:
            owned = self.store.heartbeat(self.job_id, self.attempt, fraction, message)
        except Exception:  # a missed beat is retried; the lease has slack
            log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)
            return
        if not owned:
            self.lost.set()
            return
        if self.on_beat is not None:
            self.on_beat()
        if fraction is not None and self.on_progress is not None:
            self.on_progress(fraction, message)

    def tick(self) -> None:
        """One round of the process's heartbeat thread: beat if due, stop a lost job."""
        if self._stop.is_set():
            return
        if self.pending_start is not None:
            if time.monotonic() >= self.start_by:
                try:
                    self.record_start()
                except Exception:
                    # Tried again a progress interval on, not in a tight loop.
                    self.start_by = time.monotonic() + PROGRESS_INTERVAL
                    raise
        else:
            with self._lock:
                idle = time.monotonic() - self._last_write
                dirty = self._pending is not None
            if idle >= self.interval or (dirty and idle >= PROGRESS_INTERVAL):
                self._write()
        if self.lost.is_set() and self.on_lost is not None:
            self.on_lost()  # again each round, until the job gives way


class Beats:
    """The one thread of a process that beats for each attempt running in it."""

    def __init__(self) -> None:
        self._running: set[Heartbeat] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._waking_at = 0.0  # time.monotonic() of the thread's next round
        self._thread: threading.Thread | None = None

    def add(self, beat: Heartbeat) -> None:
        with self._lock:
            self._running.add(beat)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="jobline-heartbeat", daemon=True
                )
                self._thread.start()
            # Woken early only for a pending start due before the next round.
            early = beat.pending_start is not None and beat.start_by < self._waking_at
        if early:
            self._wake.set()

    def discard(self, beat: Heartbeat) -> None:
        with self._lock:
            self._running.discard(beat)

    def _loop(self) -> None:
        while True:
            with self._lock:
                # As often as the shortest interval (or the first pending start)
                # asks, and at least twice per progress interval so that a
                # pending progress write waits little.
                due = [b.next_due() for b in self._running]
                wait = min([*due, PROGRESS_INTERVAL * 2])
                self._waking_at = time.monotonic() + wait
            self._wake.wait(wait)
            self._wake.clear()
            with self._lock:
                running = list(self._running)
            for beat in running:
                try:
                    beat.tick()
                except Exception:  # one attempt's failure must not stop the others' beats
                    log.warning("heartbeat of job %s failed", beat.job_id, exc_info=True)


_beats: tuple[int, Beats] | None = None
_beats_lock = threading.Lock()


def beats() -> Beats:
    """This process's heartbeat thread (a forked child makes its own)."""
    global _beats
    with _beats_lock:
        if _beats is None or _beats[0] != os.getpid():
            _beats = (os.getpid(), Beats())
        return _beats[1]


class Interrupter:
    """Raises JobCancelled in the thread running a job, from the heartbeat's thread.

    A signal interrupts even a blocking call (a sleep, a socket read), where an
    exception set from another thread would wait for the call to return. Works
    when the job runs in a process's main thread, as in Celery's prefork pool;
    elsewhere the job only stops at its next progress report.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.armed = False
        self.usable = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> Interrupter:
        if self.usable:
            # Left installed afterwards: a late signal must find a handler, not kill the process.
            signal.signal(STOP_SIGNAL, self._handle)
        self.armed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False

    def fire(self) -> None:
        if self.armed and self.usable:
            signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)

    def _handle(self, signum: int, frame: object) -> None:
        if self.armed:
            raise JobCancelled(self.job_id)
