"""Holding a running attempt: the heartbeat that renews its lease, and stopping it in place.

The heartbeat writes throttled progress and renews the lease from a thread of
its own; when the attempt no longer owns the job (cancelled, or handed on by
the sweeper) it tells the ``Interrupter``, which stops the job where it stands.
"""

from __future__ import annotations

import logging
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


@dataclass
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
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pending: tuple[float, str | None] | None = None
    _last_write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # The claim has just written the lease, so the first progress report waits
        # out the throttle too: a job shorter than PROGRESS_INTERVAL costs no
        # MongoDB write beyond its claim and its result.
        self._last_write = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="jobline-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        # The claim has just written the lease: a job that ends within the first
        # interval costs no write besides its outcome.
        self._last_write = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def report(self, fraction: float, message: str | None = None) -> None:
        if self.lost.is_set():
            raise JobCancelled(self.job_id)
        with self._lock:
            self._pending = (fraction, message)
            due = time.monotonic() - self._last_write >= PROGRESS_INTERVAL
        if due:
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

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval, PROGRESS_INTERVAL * 2)):
            with self._lock:
                idle = time.monotonic() - self._last_write
                dirty = self._pending is not None
            if idle >= self.interval or (dirty and idle >= PROGRESS_INTERVAL):
                self._write()
            if self.lost.is_set() and self.on_lost is not None:
                self.on_lost()  # again each round, until the job gives way


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
