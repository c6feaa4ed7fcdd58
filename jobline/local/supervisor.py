"""Restarting the processes of ``jobline up`` that exit on their own, with backoff, within a limit.

A process that exits is started again with the same argv, environment and log
(appended to), so an embedded server comes back on its port and data dir and the
URLs the others hold stay valid. The wait before each start doubles from one
second to thirty, and starts over once the process has stayed up for a minute.
As with systemd's ``StartLimitBurst=5``, a process that exits five times within
five minutes is given up on: whatever makes it crash, a restart does not fix,
and the stack stops instead of hiding it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from jobline.local.servers import Process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before starting a process again, and when to stop trying."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    # Up this long, a process counts as having started well: its next wait is the first again.
    steady_after: float = 60.0
    max_exits: int = 5
    within: float = 300.0


@dataclass
class Restarts:
    """The exits of one process, and the wait before its next start."""

    policy: RestartPolicy
    exits: deque[float] = field(default_factory=deque)
    quick_exits: int = 0

    def delay(self, at: float, up_for: float) -> float | None:
        """Count an exit at ``at``, ``up_for`` s after a start: the wait, or None to give up."""
        policy = self.policy
        self.exits.append(at)
        while self.exits[0] <= at - policy.within:
            self.exits.popleft()
        if len(self.exits) >= policy.max_exits:
            return None
        self.quick_exits = 1 if up_for >= policy.steady_after else self.quick_exits + 1
        return min(policy.first_delay * 2 ** (self.quick_exits - 1), policy.max_delay)


def how_it_ended(returncode: int | None) -> str:
    """``exited with code 3``, ``was killed by SIGKILL``."""
    if returncode is not None and returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class _Child:
    process: Process
    restarts: Restarts
    started: float
    restart_at: float | None = None  # set while it waits to be started again


class Supervisor:
    """Starts again each process that exits, until told to stop or one keeps failing."""

    def __init__(self, processes: Iterable[Process], policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        now = time.monotonic()
        self._children = [_Child(p, Restarts(self.policy), now) for p in processes]

    def watch(self, stopping: threading.Event, poll: float = 0.5) -> str | None:
        """Until ``stopping`` is set; returns why it gave up on a process, if it did."""
        while not stopping.wait(self._next_wait(poll)):
            for child in self._children:
                if child.restart_at is None and not child.process.alive():
                    given_up = self._exited(child)
                elif child.restart_at is not None and time.monotonic() >= child.restart_at:
                    given_up = self._restart(child)
                else:
                    continue
                if given_up:
                    return given_up
        return None

    def _next_wait(self, poll: float) -> float:
        """``poll``, or less when a restart falls due sooner."""
        due = [c.restart_at for c in self._children if c.restart_at is not None]
        return max(0.0, min([poll, *(at - time.monotonic() for at in due)]))

    def _exited(self, child: _Child) -> str | None:
        process, now = child.process, time.monotonic()
        how = how_it_ended(process.returncode)
        process.stop()  # whatever it left running in its group (a pool, gunicorn's workers)
        up_for = now - child.started
        delay = child.restarts.delay(now, up_for)
        if delay is None:
            given_up = (
                f"{process.name} exited {len(child.restarts.exits)} times within "
                f"{self.policy.within:g}s (the last time it {how}), so it was not restarted "
                f"again: see {process.log}"
            )
            log.error("%s", given_up)
            return given_up
        child.restart_at = now + delay
        log.warning(
            "%s %s after %.1fs up; restarting it in %gs (its log: %s)",
            process.name, how, up_for, delay, process.log,
        )  # fmt: skip
        return None

    def _restart(self, child: _Child) -> str | None:
        process = child.process
        try:
            process.start()
        except OSError as exc:
            return f"{process.name} could not be started again: {exc}"
        child.started, child.restart_at = time.monotonic(), None
        log.info("%s restarted (pid %d)", process.name, process.pid)
        return None
