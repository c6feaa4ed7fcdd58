"""Calls made at the same time by one process's threads, combined into one batch call.

The first thread to arrive makes its call at once, as a batch of one. Threads
that arrive while that call is in flight queue up; when it returns, the first
of them makes one call for everything queued by then (up to ``max_batch``),
and so on. A lone caller therefore waits for nothing but its own call, and
under load each round trip carries many items. Every caller returns only once
the batch holding its item is done, or raises the error its own item met.

A call that fails as a whole (it raises: the server is down or hung) fails
the items that were queued while it was in flight too, without a call of
their own: against a hung server each call waits out its timeouts, and those
callers would otherwise wait for that call and then for their own. Until a
call succeeds again, one caller at a time tries the server and every other
is refused at once: an outage holds one of the process's threads, not all of
them (requests that need only the other server still find a thread).

Group commit of submissions (``store.group_commit``) and of their messages
(``engine.queue``) are this. A combiner belongs to the process that made it: a
child forked while a batch was in flight would wait for it forever, so callers
keep one per process.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

# What a batch call returns: for each item in order, the error it met, or None.
BatchCall = Callable[[Sequence[T]], Sequence[BaseException | None]]


class _Waiter(Generic[T]):
    __slots__ = ("arrived", "done", "error", "item", "lead", "woken")

    def __init__(self, item: T) -> None:
        self.item = item
        self.arrived = time.monotonic()
        self.error: BaseException | None = None
        self.lead = False  # this thread makes the next call
        self.done = False
        self.woken = threading.Event()


class Combiner(Generic[T]):
    """One batch call for the items its callers bring while the last one is in flight."""

    def __init__(self, call: BatchCall[T], max_batch: int) -> None:
        self.call = call
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queued: list[_Waiter[T]] = []
        self._busy = False
        # The last call that failed as a whole, until one succeeds: when, and with what.
        self._failed_at = -math.inf
        self._failure: BaseException | None = None

    def submit(self, item: T) -> None:
        """Have ``item`` handled, alone or with others queued meanwhile; raises its error."""
        me = _Waiter(item)
        with self._lock:
            if self._failure is not None and self._busy:
                # The last call failed, and another caller is finding out whether it still would.
                raise _again(self._failure)
            self._queued.append(me)
            if not self._busy:
                self._busy = me.lead = True
        while not me.done:
            if me.lead:
                self._call_next()
            else:
                me.woken.wait()
                me.woken.clear()
        if me.error is not None:
            raise me.error

    def _call_next(self) -> None:
        """Make the call for the queued batch (which holds this thread's item), then pass
        the lead on."""
        with self._lock:
            batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch :]
        try:
            if batch[-1].arrived < self._failed_at:  # every one waited through that failure
                for waiter in batch:
                    waiter.error = _again(self._failure)
                return  # the failure keeps its time: what arrives after it is tried
            errors = self.call([waiter.item for waiter in batch])
            for waiter, error in zip(batch, errors, strict=True):
                waiter.error = error
            with self._lock:
                self._failure = None  # the server answered
        except BaseException as exc:  # nobody's item is known to be done
            interrupted = not isinstance(exc, Exception)  # this thread is stopping
            failure = RuntimeError(f"batch interrupted: {exc!r}") if interrupted else exc
            for i, waiter in enumerate(batch):
                waiter.error = failure if i == 0 else _again(failure)
            with self._lock:
                self._failed_at, self._failure = time.monotonic(), failure
            if interrupted:
                raise
        finally:
            with self._lock:
                if self._queued:
                    self._queued[0].lead = True
                    self._queued[0].woken.set()
                else:
                    self._busy = False
            for waiter in batch:
                waiter.done = True
                waiter.woken.set()


def _again(failure: BaseException | None) -> BaseException:
    """A new exception like ``failure``: raising one instance again and again would grow
    its traceback, and the frames it holds, for as long as a server stays down."""
    try:
        return copy.copy(failure) if failure is not None else RuntimeError("the last call failed")
    except Exception:  # an exception class copy cannot rebuild
        return RuntimeError(f"the last call failed: {failure!r}")
