"""Restarting what `jobline up` started: the backoff, the limit, and stopping mid-wait."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobline.local.servers import Process
from jobline.local.supervisor import RestartPolicy, Restarts, Supervisor
from tests.support import wait_until

QUICK = RestartPolicy(first_delay=0.05, max_delay=0.2, steady_after=30, max_exits=4, within=60)


def child(name: str, code: str, log: Path) -> Process:
    """A tiny Python child printing its marker from the environment, then running ``code``."""
    script = f"import os, sys, time; print('started', os.environ['MARKER'], flush=True); {code}"
    return Process(name, [sys.executable, "-c", script], env={"MARKER": name}, log=log)


@pytest.fixture
def children() -> Iterator[list[Process]]:
    """The processes a test starts; all stopped after it."""
    started: list[Process] = []
    yield started
    for process in started:
        process.stop(timeout=5)


def watch_in_background(supervisor: Supervisor) -> tuple[threading.Event, list[str | None]]:
    stopping, outcome = threading.Event(), []
    threading.Thread(target=lambda: outcome.append(supervisor.watch(stopping, poll=0.02))).start()
    return stopping, outcome


@pytest.mark.parametrize(
    ("exits", "delays"),
    [
        # (seconds since the first start, seconds up) of each exit -> each wait
        ([(0, 0.1), (1.2, 0.1), (3.5, 0.2), (8, 0.5)], [1, 2, 4, 8]),
        ([(0, 0.1), (10, 9), (40, 29), (100, 59)], [1, 2, 4, 8]),
        # After a steady run the wait starts over at the first delay.
        ([(0, 0.1), (2, 1), (100, 90), (102, 1)], [1, 2, 1, 2]),
    ],
)
def test_the_wait_doubles_after_each_quick_exit_and_starts_over_after_a_steady_run(
    exits: list[tuple[float, float]], delays: list[float]
) -> None:
    restarts = Restarts(RestartPolicy(max_exits=99))
    assert [restarts.delay(at, up_for) for at, up_for in exits] == delays


def test_the_wait_is_capped() -> None:
    restarts = Restarts(RestartPolicy(max_exits=99))
    waits = [restarts.delay(at, 0.1) for at in range(0, 1000, 100)]
    assert waits[:6] == [1, 2, 4, 8, 16, 30]
    assert set(waits[5:]) == {30}


def test_the_fifth_exit_within_five_minutes_gives_up_but_exits_spread_wider_do_not() -> None:
    flapping = Restarts(RestartPolicy())
    assert [flapping.delay(at, 60) for at in (0, 70, 140, 210, 280)][-1] is None
    spread = Restarts(RestartPolicy())
    assert None not in [spread.delay(at, 60) for at in range(0, 1000, 80)]


@pytest.mark.timeout(30)
def test_a_child_that_exits_is_restarted_with_its_argv_env_and_log_and_the_rest_untouched(
    tmp_path: Path, children: list[Process], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "jobline.local.supervisor")
    flaky = child("flaky", "time.sleep(0.3); sys.exit(3)", tmp_path / "flaky.log").start()
    steady = child("steady", "time.sleep(60)", tmp_path / "steady.log").start()
    children += [flaky, steady]
    first_pid, steady_pid = flaky.pid, steady.pid
    supervisor = Supervisor(children, QUICK)
    stopping, outcome = watch_in_background(supervisor)
    try:
        wait_until(lambda: flaky.alive() and flaky.pid != first_pid, 10, "a second flaky")
    finally:
        stopping.set()
    wait_until(lambda: outcome, 5, "the watch to end")
    assert outcome == [None]
    assert steady.alive() and steady.pid == steady_pid
    wait_until(
        lambda: (tmp_path / "flaky.log").read_text().count("started flaky") == 2, 5, "its line"
    )
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("flaky exited with code 3 after ") and "restarting it in 0.05s" in m
        for m in messages
    ), messages
    assert f"flaky restarted (pid {flaky.pid})" in messages


@pytest.mark.timeout(30)
def test_a_child_that_crashes_at_once_every_time_is_given_up_on_after_the_limit(
    tmp_path: Path, children: list[Process], caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "crasher.log"
    children.append(child("crasher", "sys.exit(3)", log).start())
    started = time.monotonic()
    stopping = threading.Event()
    given_up = Supervisor(children, QUICK).watch(stopping, poll=0.02)
    assert given_up == (
        "crasher exited 4 times within 60s (the last time it exited with code 3), so it was "
        f"not restarted again: see {log}"
    )
    assert log.read_text().count("started crasher") == 4
    waits = [r.getMessage().split("restarting it in ")[1] for r in caplog.records
             if "restarting it in" in r.getMessage()]  # fmt: skip
    assert [w.split(" ")[0] for w in waits] == ["0.05s", "0.1s", "0.2s"]
    assert time.monotonic() - started >= 0.35
    assert not stopping.is_set()


@pytest.mark.timeout(30)
def test_stopping_during_a_backoff_returns_at_once_and_starts_nothing_again(
    tmp_path: Path, children: list[Process], caplog: pytest.LogCaptureFixture
) -> None:
    crasher = child("crasher", "sys.exit(3)", tmp_path / "crasher.log").start()
    steady = child("steady", "time.sleep(60)", tmp_path / "steady.log").start()
    children += [crasher, steady]
    slow = RestartPolicy(first_delay=30, max_delay=30)
    stopping, outcome = watch_in_background(Supervisor(children, slow))
    wait_until(
        lambda: any("restarting it in 30s" in r.getMessage() for r in caplog.records),
        10,
        "the exit to be seen",
    )
    asked = time.monotonic()
    stopping.set()
    wait_until(lambda: outcome, 5, "the watch to end")
    assert time.monotonic() - asked < 5  # not the 30 s backoff
    assert outcome == [None]
    for process in reversed(children):  # as `jobline up` stops its stack
        process.stop(timeout=5)
    assert not crasher.alive() and not steady.alive()
    assert (tmp_path / "crasher.log").read_text().count("started crasher") == 1


# On SIGTERM: note the time, take half a second to shut down, note the time, exit 0.
SLOW_TO_STOP = (
    "import signal; signal.signal(signal.SIGTERM, lambda *_: (print('term', time.time(), "
    "flush=True), time.sleep(0.5), print('exit', time.time(), flush=True), sys.exit(0))); "
    "print('ready', flush=True); time.sleep(60)"
)


def stopping_times(log: Path) -> dict[str, float]:
    return {
        line.split()[0]: float(line.split()[1])
        for line in log.read_text().splitlines()
        if line.startswith(("term", "exit"))
    }


@pytest.mark.timeout(60)
def test_jobline_up_stops_its_processes_side_by_side_and_its_servers_after_them(
    tmp_path: Path, children: list[Process]
) -> None:
    from jobline.local.stack import Stack

    started = {name: child(name, SLOW_TO_STOP, tmp_path / f"{name}.log").start()
               for name in ("worker", "api", "flower", "mongodb")}  # fmt: skip
    children += started.values()
    for name in started:
        wait_until(lambda n=name: "ready" in (tmp_path / f"{n}.log").read_text(), 20, name)
    stack = Stack(tmp_path / "data", servers=[started["mongodb"]],
                  processes=[started[n] for n in ("worker", "api", "flower")])  # fmt: skip
    stack.stop()
    times = {name: stopping_times(tmp_path / f"{name}.log") for name in started}
    jobline = [times[n] for n in ("worker", "api", "flower")]
    # Each was asked before any had finished: they shut down together, not in turn.
    assert max(t["term"] for t in jobline) < min(t["exit"] for t in jobline)
    # The server was asked only once everything using it had gone.
    assert times["mongodb"]["term"] > max(t["exit"] for t in jobline)
    assert [p.returncode for p in started.values()] == [0, 0, 0, 0]
