"""What a job's programs write straight to file descriptors 1 and 2: part of the job's log.

``print`` and ``logging`` reach a job's log inside Python (jobline.engine.joblog).
A program the job runs (``subprocess.run(["bwa", "mem", ...])``), a C library
or ``os.write(1, ...)`` writes to the process's descriptors 1 and 2 instead.
In each of a worker's pool processes, while a job runs, those point at two
pipes made for that job, which one thread of the process reads; what arrives
becomes the job's ``stdout`` and ``stderr`` lines. Between jobs they point
where they did before (the worker's own log), and the worker's own log
handlers write there directly, so its records never enter a job's log.

A job ends only once everything its programs wrote before it returned has been
read. A program it left running still holds that job's pipes: what it writes
later passes through to the worker's log, never into another job's.
Costs a job that writes nothing two pipes, four ``dup2``, two ``ioctl`` and two
``read`` calls, and no wake-up of the reader: as much CPU as one pipe kept for
the process's life cost, within the noise of a measurement.
"""

from __future__ import annotations

import codecs
import fcntl
import logging
import os
import select
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STREAMS = ((1, "stdout"), (2, "stderr"))
CHUNK = 65536
# How long a job's end waits for the reader to take what the job's programs wrote.
DRAIN_SECONDS = 5.0


class _Pipe:
    """One job's pipe for one descriptor: read here, written by the job and its programs."""

    def __init__(self, fd: int, name: str, before: int, sink: Callable[[str], Any]) -> None:
        self.name = name
        self.before = before  # where the worker's own output goes
        self.read, write = os.pipe()
        os.set_blocking(self.read, False)  # two threads may read it: neither must block
        os.dup2(write, fd)
        os.close(write)
        self.open = True  # until every write end is closed
        self.sink: Callable[[str], Any] | None = sink  # None once the job has ended
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pending(self) -> int:
        """Bytes written to the pipe and not yet read."""
        if not self.open:
            return 0
        try:
            found = fcntl.ioctl(self.read, termios.FIONREAD, b"\0\0\0\0")
        except OSError:  # closed by the reader meanwhile
            return 0
        return int(struct.unpack("i", found)[0])

    def read_some(self) -> bytes | None:
        """What was written and not yet read; b"" once no writer is left, None if none wrote."""
        try:
            return os.read(self.read, CHUNK)
        except BlockingIOError:
            return None

    def take(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink(self.decoder.decode(data))
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self.before, view) :]


class ProgramOutput:
    """The descriptors of one pool process, and the thread that reads its jobs' pipes."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.before = {fd: os.dup(fd) for fd, _ in STREAMS}
        self._current: list[_Pipe] = []  # the running job's
        self._reading: dict[int, _Pipe] = {}  # by read end: the job's and those left held
        self._busy = False
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        # epoll: a pipe registered or dropped while the thread waits needs no wake-up.
        self._poll = select.epoll()
        _point_handlers_at(self.before)
        self._thread = threading.Thread(target=self._loop, name="jobline-output", daemon=True)
        self._thread.start()

    def attach(self, sinks: dict[str, Callable[[str], Any]]) -> None:
        """From now on, what the programs write goes to ``sinks`` (by stream name)."""
        if not self._thread.is_alive():
            return  # nobody would read the pipes: the output stays the worker's
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()  # what was written before the job stays the worker's
        pipes = [_Pipe(fd, name, self.before[fd], sinks[name]) for fd, name in STREAMS]
        with self._lock:
            self._current = pipes
            for pipe in pipes:
                self._watch(pipe)

    def detach(self) -> None:
        """Wait until what was written so far is read; what comes later is the worker's."""
        if not self._current:
            return
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        with self._lock:
            self._drain()
            ended, self._current = self._current, []
            for pipe in ended:
                if pipe.sink is not None:
                    pipe.sink(pipe.decoder.decode(b"", final=True))
                pipe.sink = None
            ended = [pipe for pipe in ended if pipe.open]  # not one the job closed
            for pipe in ended:
                self._forget(pipe, close=False)
            for fd, before in self.before.items():
                os.dup2(before, fd)  # also gives back a descriptor the job closed
            for pipe in ended:
                self._settle(pipe)

    def catch_up(self) -> None:
        """Let what the programs wrote so far reach the log before a line the job writes now."""
        if threading.current_thread() is self._thread:
            return
        if self._busy or any(pipe.pending() for pipe in self._current):
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        """Wait, holding the lock, until the reader has taken what the job's pipes hold."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._busy or any(pipe.pending() for pipe in self._current):
            left = deadline - time.monotonic()
            if left <= 0 or not self._thread.is_alive():
                log.warning("output of programs still unread after %ss", DRAIN_SECONDS)
                return
            self._drained.wait(min(left, 0.05))

    def _settle(self, pipe: _Pipe) -> None:
        """A pipe the ended job no longer writes: closed, or watched while a program holds it.

        Usually no program is left holding it: it ends here, and the reader
        need not wake for it.
        """
        data = pipe.read_some()
        if data == b"":
            pipe.open = False
            os.close(pipe.read)
            return
        if data:
            pipe.take(data)
        self._watch(pipe)

    def _watch(self, pipe: _Pipe) -> None:
        self._reading[pipe.read] = pipe
        self._poll.register(pipe.read, select.EPOLLIN)

    def _forget(self, pipe: _Pipe, close: bool = True) -> None:
        del self._reading[pipe.read]
        self._poll.unregister(pipe.read)
        if close:
            pipe.open = False
            os.close(pipe.read)

    def _loop(self) -> None:
        try:
            while True:
                ready = self._poll.poll()
                with self._lock:
                    self._busy = True
                    try:
                        for fd, _ in ready:
                            # Dropped meanwhile by the job's end, or read by it already.
                            if (pipe := self._reading.get(fd)) is None:
                                continue
                            if (data := pipe.read_some()) is None:
                                continue
                            if not data:  # nothing can write to it any more
                                self._forget(pipe)
                                continue
                            try:
                                pipe.take(data)
                            except Exception:  # lost output, but the pipe is still read
                                log.warning("output of a program was lost", exc_info=True)
                    finally:
                        self._busy = False
                        self._drained.notify_all()
        except BaseException:
            # Nobody reads the pipes any more: give the descriptors back, so
            # that no writer blocks on a full pipe.
            for fd, before in self.before.items():
                os.dup2(before, fd)
            log.exception("reading the output of jobs' programs stopped")


def _point_handlers_at(targets: dict[int, int]) -> None:
    """The worker's own log handlers that write to descriptor 1 or 2 write where it points now."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if hasattr(lg, "handlers")]
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler, logging.StreamHandler):
                continue
            try:
                fd = handler.stream.fileno()
            except (AttributeError, OSError, ValueError):
                continue
            if fd in targets:
                handler.setStream(
                    open(targets[fd], "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
                )


_installed: ProgramOutput | None = None


def install() -> None:
    """Make ready to capture each job's descriptors 1 and 2 (a pool process, at its start)."""
    global _installed
    if _installed is None or _installed.pid != os.getpid():
        _installed = ProgramOutput()


def current() -> ProgramOutput | None:
    """This process's capture, if it made one (not one inherited from a parent)."""
    found = _installed
    if found is None or found.pid != os.getpid():
        return None
    return found
