"""Celery's task events, while a monitor asks for them: every one sent, a few messages a second."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.asynchronous import Hub, get_event_loop, set_event_loop

from jobline.core.settings import Settings
from jobline.engine.queue import make_celery
from jobline.engine.task_events import TimedFlushDispatcher
from jobline.store.jobs import JobStore
from tests.conftest import Api
from tests.support import wait_until

HOST = "dispatcher@test"


class EventMessages:
    """Every task-event message published on the broker, as the Redis transport sends them."""

    def __init__(self, url: str) -> None:
        self.messages: list[list[dict[str, Any]]] = []
        self._pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe("*celeryev/task.*")
        self._pubsub.get_message(timeout=1)  # the subscription is in place before we go on
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None:
                envelope = json.loads(message["data"])
                body = envelope["body"]
                if envelope["properties"].get("body_encoding") == "base64":
                    body = base64.b64decode(body)
                events = json.loads(body)
                self.messages.append(events if isinstance(events, list) else [events])

    def events(self, hostname: str | None = None) -> list[dict[str, Any]]:
        """Every event received (only ``hostname``'s, if given)."""
        return [event for message in self.sent_by(hostname) for event in message]

    def sent_by(self, hostname: str | None) -> list[list[dict[str, Any]]]:
        """The messages received, only those carrying ``hostname``'s events if given."""
        return [m for m in list(self.messages)
                if hostname is None or any(e["hostname"] == hostname for e in m)]  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


@pytest.fixture
def event_messages(settings: Settings) -> Iterator[EventMessages]:
    watching = EventMessages(settings.broker)
    yield watching
    watching.close()


@pytest.fixture
def events_on(settings: Settings, worker: Any) -> Iterator[None]:
    """The shared worker sending task events, as it does while Flower runs; off again after."""
    control = make_celery(settings).control
    control.enable_events()
    yield
    control.disable_events()


def test_a_workers_task_events_all_arrive_a_batch_to_a_message(
    live_api: Api, store: JobStore, events_on: None, event_messages: EventMessages
) -> None:
    # enable_events is a broadcast: wait until the worker is sending before counting.
    wait_until(
        lambda: (
            live_api.submit_and_wait("/api/v1/jobs", {"type": "noop"})
            and any(e["type"] == "task-succeeded" for e in event_messages.events())
        ),
        30,
        "task events to start",
    )
    time.sleep(0.5)
    event_messages.messages.clear()
    posted = [live_api.post("/api/v1/jobs", json={"type": "noop"}).json()["id"] for _ in range(30)]
    tasks = {store.get(job_id)["task_id"] for job_id in posted}

    def seen() -> dict[str, list[str]]:
        kinds: dict[str, list[str]] = {}
        for event in event_messages.events():
            if event.get("uuid") in tasks:
                kinds.setdefault(event["uuid"], []).append(event["type"])
        return kinds

    # Every task's events, each once and in order, in Celery's own format.
    wait_until(lambda: len(seen()) == len(tasks) and all(len(k) == 3 for k in seen().values()),
               30, "every task's three events")  # fmt: skip
    assert set(map(tuple, seen().values())) == {("task-received", "task-started", "task-succeeded")}
    # And sent a batch at a time: one message per event was Celery's rate, on every job.
    carried = [m for m in event_messages.messages if any(e.get("uuid") in tasks for e in m)]
    assert len(carried) <= len(tasks) * 3 / 4, [len(m) for m in carried]


def test_a_closing_dispatcher_sends_what_it_had_buffered(
    settings: Settings, event_messages: EventMessages
) -> None:
    before = get_event_loop()
    set_event_loop(Hub())  # a loop that never turns: only closing can send the buffer
    try:
        with Connection(settings.broker) as connection:
            dispatcher = TimedFlushDispatcher(
                connection,
                hostname=HOST,
                buffer_group=["task"],
                on_send_buffered=lambda: None,
            )
            dispatcher.send("task-succeeded", uuid="buffered-1")
            dispatcher.send("task-succeeded", uuid="buffered-2")
            time.sleep(0.5)
            assert event_messages.events(HOST) == []  # held for the timer
            dispatcher.close()
            wait_until(lambda: len(event_messages.events(HOST)) == 2, 10, "the buffered events")
    finally:
        set_event_loop(before)
    assert [e["uuid"] for e in event_messages.events(HOST)] == ["buffered-1", "buffered-2"]
    assert len(event_messages.sent_by(HOST)) == 1  # in one message


def test_a_dispatcher_whose_buffer_went_when_full_sends_no_empty_message_after(
    settings: Settings, event_messages: EventMessages
) -> None:
    before = get_event_loop()
    hub = Hub()
    set_event_loop(hub)
    try:
        with Connection(settings.broker) as connection:
            dispatcher = TimedFlushDispatcher(
                connection, hostname=HOST, buffer_group=["task"], buffer_limit=2,
                on_send_buffered=lambda: None,
            )  # fmt: skip
            dispatcher.send("task-received", uuid="full-1")
            dispatcher.send("task-received", uuid="full-2")  # the limit: sent at once
            wait_until(lambda: len(event_messages.events(HOST)) == 2, 10, "the full buffer")
            (timer,) = hub.timer.queue  # the first event's timer, fired now
            timer.entry()
            dispatcher.close()
            time.sleep(0.5)
    finally:
        set_event_loop(before)
    assert len(event_messages.sent_by(HOST)) == 1
    assert [] not in event_messages.messages  # Celery's flush of an emptied buffer
