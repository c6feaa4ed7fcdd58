"""Celery's task events, sent a few times a second instead of on every turn of the loop.

While Flower (or ``celery events``) watches, a worker sends three task events
a job: received, started, succeeded. Celery's dispatcher already buffers them
and sends the buffer as one ``task.multi`` message, but it flushes on the
worker loop's next turn, so nearly every event is a broker publish of its
own (on Redis, a new client for each). Here the first event buffered sets a
timer on the worker's event loop and the buffer goes when it fires, or when
it holds ``buffer_limit`` events: a few publishes a second however many jobs
run, each event late by at most ``FLUSH_SECONDS``. Nothing else changes: the
same events, in order, in Celery's own format, which every monitor reads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher
from kombu.asynchronous import get_event_loop

# How late an event may reach a monitor; Flower refreshes its pages about once a second.
FLUSH_SECONDS = 0.2


class TimedFlushDispatcher(EventDispatcher):  # type: ignore[misc]
    """Celery's dispatcher, flushing its buffered task events on a timer."""

    def __init__(self, *args: Any, on_send_buffered: Any = None, **kwargs: Any) -> None:
        # Celery buffers (and passes a callback) only when the worker runs an event loop.
        self._flush_pending = False
        timed = self._flush_soon if on_send_buffered is not None else None
        super().__init__(*args, on_send_buffered=timed, **kwargs)

    def _flush_soon(self) -> None:
        if self._flush_pending:
            return
        hub = get_event_loop()
        if hub is None:  # no loop to wait on: as Celery would, at once
            self.flush()
            return
        self._flush_pending = True
        hub.call_later(FLUSH_SECONDS, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        if self._holds_events():
            self.flush()

    def _holds_events(self) -> bool:
        # Celery's flush sends a group's buffer even when empty (as after a full one went).
        return self.enabled and self.producer is not None and any(self._group_buffer.values())

    def close(self) -> None:
        """Send what is buffered first: a stopping worker's last events still reach monitors."""
        if self._holds_events():
            with contextlib.suppress(Exception):  # a broker gone by now: nothing to tell
                self.flush()
        super().close()


class TimedFlushEvents(Events):  # type: ignore[misc]
    dispatcher_cls = "jobline.engine.task_events:TimedFlushDispatcher"
