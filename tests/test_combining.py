"""Calls a process's threads make at once, combined: who waits, who is refused, who tries."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from jobline.core.combining import Combiner


class Server:
    """A batch call whose every call the test holds until it lets it go, and can fail."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.down = False

    def __call__(self, items: Sequence[str]) -> list[BaseException | None]:
        self.calls.append(list(items))
        self.entered.release()
        assert self.go.acquire(timeout=10), "the test never let the call go"
        if self.down:
            raise ConnectionError("the server is away")
        return [ValueError(item) if item.startswith("bad") else None for item in items]


class Caller(threading.Thread):
    """One thread submitting one item; what it raised, if anything."""

    def __init__(self, combiner: Combiner[str], item: str) -> None:
        super().__init__(daemon=True)
        self.combiner, self.item = combiner, item
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.combiner.submit(self.item)
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> str:
        self.join(10)
        assert not self.is_alive(), f"{self.item} never returned"
        return "ok" if self.error is None else type(self.error).__name__


def queued(combiner: Combiner[str], n: int) -> None:
    """Wait until ``n`` callers wait behind the call in flight."""
    deadline = time.monotonic() + 10
    while len(combiner._queued) < n:
        assert time.monotonic() < deadline, "the callers never queued"
        time.sleep(0.005)


@pytest.fixture
def server() -> Server:
    return Server()


def test_callers_that_arrive_while_a_call_is_in_flight_share_the_next_each_with_its_own_error(
    server: Server,
) -> None:
    combiner = Combiner(server, max_batch=3)
    first = Caller(combiner, "first")
    assert server.entered.acquire(timeout=10)
    rest = [Caller(combiner, item) for item in ("a", "bad-b", "c", "d")]
    queued(combiner, 4)
    for _ in range(3):
        server.go.release()
    assert [caller.outcome() for caller in [first, *rest]] == ["ok", "ok", "ValueError", "ok", "ok"]
    # At most max_batch a call, in the order they came.
    assert [len(call) for call in server.calls] == [1, 3, 1]
    assert [item for call in server.calls for item in call][1:] == [c.item for c in rest]


def test_what_waited_through_a_failed_call_is_refused_with_it_and_one_caller_tries_again(
    server: Server,
) -> None:
    combiner = Combiner(server, max_batch=10)
    server.down = True
    first = Caller(combiner, "first")
    assert server.entered.acquire(timeout=10)
    behind = [Caller(combiner, f"behind-{i}") for i in range(3)]
    queued(combiner, 3)
    server.go.release()
    assert [c.outcome() for c in [first, *behind]] == ["ConnectionError"] * 4
    assert len(server.calls) == 1  # those behind it were never tried
    # Each caller raises an exception of its own (one instance would gather every traceback).
    assert len({id(c.error) for c in [first, *behind]}) == 4

    # Until a call succeeds, one caller tries; one arriving meanwhile is refused at once.
    probe = Caller(combiner, "probe")
    assert server.entered.acquire(timeout=10)
    assert Caller(combiner, "meanwhile").outcome() == "ConnectionError"
    assert len(server.calls) == 2
    server.down = False
    server.go.release()
    assert probe.outcome() == "ok"
    # The server back, callers wait their turn again.
    again = Caller(combiner, "again")
    assert server.entered.acquire(timeout=10)
    later = Caller(combiner, "later")
    queued(combiner, 1)
    server.go.release()
    server.go.release()
    assert (again.outcome(), later.outcome()) == ("ok", "ok")
    assert server.calls[-2:] == [["again"], ["later"]]


def test_a_leader_stopped_mid_call_stops_and_those_behind_it_are_told(server: Server) -> None:
    def stopping(items: Sequence[str]) -> list[BaseException | None]:
        server(items)
        raise KeyboardInterrupt

    combiner = Combiner(stopping, max_batch=10)
    first = Caller(combiner, "first")
    assert server.entered.acquire(timeout=10)
    behind = Caller(combiner, "behind")
    queued(combiner, 1)
    server.go.release()
    assert first.outcome() == "KeyboardInterrupt"
    assert behind.outcome() == "RuntimeError"  # not an interrupt of its own thread
