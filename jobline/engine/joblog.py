"""A job's own log: what an attempt writes through ``logging`` and ``print``, captured and stored.

While a job function runs in its worker process, a handler on the root logger
takes every record at INFO and above (from any logger but the worker's own
machinery), and ``sys.stdout`` / ``sys.stderr`` are replaced by writers that
turn each line printed into a record of stream ``stdout`` or ``stderr``. Lines
are scrubbed of secrets as jobline's own logs are, buffered in memory, and
written by a thread of their own with one ``insert_many`` at most twice a
second, then announced on the job's event stream. A job's log, over all its
attempts, is capped at ``JOBLINE_JOB_LOG_MAX_BYTES``: past it lines are only
counted, and one marker line at the end of the attempt says how many were
dropped. (An attempt learns what the earlier ones used when it logs its
first line, from their records: one read, and only for a retried job that logs.)

A job that logs nothing starts no thread and writes nothing.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jobline.core.logs import scrub
from jobline.core.settings import Settings
from jobline.engine import events, program_output
from jobline.store.logs import LogStore, line_id, line_view
from jobline.store.records import Job, now

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
# One line is at most this long; a longer one is cut and says so.
MAX_LINE_CHARS = 16_000
# What a stored line costs besides its message (its id, job, time, level…), so
# that a job printing empty lines is capped by what it stores, not by its text.
LINE_OVERHEAD = 100
# The worker's own loggers: their records during a job are about the job, not from it.
MACHINERY = ("jobline.engine", "jobline.store", "celery", "kombu", "billiard", "amqp")
STREAM_LEVELS = {"stdout": "INFO", "stderr": "WARNING"}


class JobLog:
    """The buffered log of one attempt, flushed by its own thread from the first line on."""

    def __init__(
        self,
        db: Any,
        settings: Settings,
        job: Job,
        before_write: Callable[[], bool] | None = None,
    ) -> None:
        self.db = db
        # Called before the first write; False: the attempt lost its job, keep nothing.
        self.before_write = before_write
        self.lost = False
        self._store: LogStore | None = None
        self.settings = settings
        self.job = job
        self.job_id: str = job["_id"]
        self.attempt: int = job["attempts"]
        self.cap = settings.job_log_max_bytes
        self.budget: int | None = None  # what is left of the cap, read at the first line
        self.dropped = 0
        self._used = 0
        self._seq = 0
        self._pending: list[dict[str, Any]] = []
        self._first = True
        self._marked = False
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> LogStore:
        # Made at the first line: a job that logs nothing pays nothing for it.
        if self._store is None:
            self._store = LogStore(self.db)
        return self._store

    def add(self, level: str, stream: str, message: str, *, over_budget: bool = False) -> None:
        """Buffer one line (scrubbed, cut to MAX_LINE_CHARS), or count it as dropped."""
        if self.dropped and not over_budget:
            with self._lock:  # past the cap, a line costs a count
                self.dropped += 1
            return
        if len(message) > MAX_LINE_CHARS:
            message = message[:MAX_LINE_CHARS] + " [line cut]"
        message = scrub(message)
        cost = len(message.encode("utf-8", "replace")) + LINE_OVERHEAD
        budget = self._budget()
        with self._lock:
            if not over_budget and (self.dropped or self._used + cost > budget):
                self.dropped += 1
                return
            self._used += cost
            seq, self._seq = self._seq, self._seq + 1
            self._pending.append(
                {
                    "_id": line_id(self.job_id, self.attempt, seq),
                    "job": self.job_id,
                    "attempt": self.attempt,
                    "time": now(),
                    "level": level,
                    "stream": stream,
                    "message": message,
                }
            )
            start = self._thread is None
            if start:
                self._thread = threading.Thread(
                    target=self._loop, name="jobline-joblog", daemon=True
                )
        if start and self._thread is not None:
            self._thread.start()

    def _budget(self) -> int:
        if self.budget is None:
            try:
                self.budget = self.cap - self.store.used_before(self.job_id, self.attempt)
            except Exception:  # MongoDB away: this attempt may use the whole cap
                log.warning("could not read the log usage of job %s", self.job_id)
                self.budget = self.cap
        return self.budget

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines in one round trip and announce them; kept on failure."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
                dropped = self.dropped
            if not batch or self.lost:
                return
            try:
                if self._first and self.before_write is not None and not self.before_write():
                    self.lost = True
                    return
                self.store.append(batch, first=self._first, at=now())
                self._first = False
                if dropped and not self._marked:
                    self.store.mark_truncated(self.job_id, self.attempt)
                    self._marked = True
            except Exception:  # the lines wait for the next flush; the job goes on
                log.warning("could not store log lines of job %s", self.job_id, exc_info=True)
                with self._lock:
                    self._pending[:0] = batch
                return
            events.job_log(self.settings, self.job, [line_view(line) for line in batch])

    def close(self) -> None:
        """Stop the flushing thread, add the marker line if lines were dropped, write the rest."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.dropped:
            self.add(
                "WARNING",
                "jobline",
                f"{self.dropped} more lines dropped: the job's log reached "
                f"JOBLINE_JOB_LOG_MAX_BYTES ({self.cap} bytes)",
                over_budget=True,
            )
        self.flush()
        # This attempt stored lines: the next one counts them against the cap.
        if self._seq and not self.lost:
            try:
                self.store.record_usage(self.job_id, self.attempt, self._used)
            except Exception:
                log.warning("could not record the log usage of job %s", self.job_id)


class _Handler(logging.Handler):
    """Takes the running job's log records (INFO and above, any logger but the worker's own).

    One per process, on the root logger for good: installing a handler per job
    costs more than a short job itself (logging clears every logger's cache).
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.joblog: JobLog | None = None
        self.output: program_output.ProgramOutput | None = None
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        joblog = self.joblog
        if joblog is None or record.name.startswith(MACHINERY):
            return
        if self.output is not None:
            self.output.catch_up()
        try:
            message = self.format(record)
        except Exception:  # a bad format string must not break the job
            message = str(record.msg)
        joblog.add(record.levelname, "log", message)


class _Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a running job: each line becomes a log line."""

    def __init__(
        self, joblog: JobLog, name: str, output: program_output.ProgramOutput | None = None
    ) -> None:
        self.joblog = joblog
        self.name = name
        self.output = output  # a line printed after a program's lands after them
        self._partial = ""
        self._ended = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # subprocess.run(..., stdout=sys.stdout) hands a program the descriptor,
        # whose output is the job's too where a pool process redirected it.
        if self.output is None:
            raise io.UnsupportedOperation("fileno")
        return 1 if self.name == "stdout" else 2

    def write(self, text: str) -> int:
        if self._ended:
            # Kept past its job (a StreamHandler the job made, a thread it left): what is
            # written now belongs to whoever writes now, the running job or the worker.
            return getattr(sys, self.name).write(text)  # type: ignore[no-any-return]
        if self.output is not None:
            self.output.catch_up()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.joblog.add(STREAM_LEVELS[self.name], self.name, line)
        if len(self._partial) > MAX_LINE_CHARS:
            self.joblog.add(STREAM_LEVELS[self.name], self.name, self._partial)
            self._partial = ""
        return len(text)

    def end(self) -> None:
        """A last line printed without a newline; then this stream is the job's no more."""
        if self._partial:
            self.joblog.add(STREAM_LEVELS[self.name], self.name, self._partial)
            self._partial = ""
        self._ended = True


_handler = _Handler()


def _install(root: logging.Logger) -> None:
    """The process's one capturing handler on the root logger, which must pass INFO."""
    if _handler not in root.handlers:
        root.addHandler(_handler)
    level = root.getEffectiveLevel()
    if level > logging.INFO:
        # The worker's own handler keeps its level, so its log is as before; so do
        # the worker's own loggers, whose records a job's log leaves out anyway:
        # otherwise every job made their INFO records only to drop them.
        for handler in root.handlers:
            if handler is not _handler and handler.level == logging.NOTSET:
                handler.setLevel(level)
        for name in MACHINERY:
            machinery = logging.getLogger(name)
            if machinery.level == logging.NOTSET:
                machinery.setLevel(level)
        root.setLevel(logging.INFO)


@contextmanager
def capture(
    settings: Settings, db: Any, job: Job, before_write: Callable[[], bool] | None = None
) -> Iterator[JobLog]:
    """Capture what the job writes while the block runs; stored before the block ends.

    ``before_write`` runs before the first line is stored (see JobLog).
    """
    joblog = JobLog(db, settings, job, before_write)
    _install(logging.getLogger())
    # What the job's programs write to descriptors 1 and 2, in a pool process.
    output = program_output.current()
    programs = [] if output is None else [_Stream(joblog, "stdout"), _Stream(joblog, "stderr")]
    if output is not None:
        output.attach({stream.name: stream.write for stream in programs})
    _handler.joblog, _handler.output = joblog, output
    saved = sys.stdout, sys.stderr
    out, err = _Stream(joblog, "stdout", output), _Stream(joblog, "stderr", output)
    sys.stdout, sys.stderr = out, err
    try:
        yield joblog
    finally:
        sys.stdout, sys.stderr = saved
        if output is not None:
            output.detach()
        _handler.joblog = _handler.output = None
        for stream in (*programs, out, err):
            stream.end()
        joblog.close()
