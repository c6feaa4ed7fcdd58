"""Starting and stopping local servers and processes, for ``jobline up`` and the tests.

Every process is started in a session of its own, so stopping it also stops
whatever it forked (Celery's pool, gunicorn's workers): nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DEFAULT_STOP_TIMEOUT = 20.0


class ServerError(RuntimeError):
    """A local server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def find_executable(name: str) -> str:
    """``name`` on PATH or beside the running Python (a virtualenv's bin/)."""
    beside = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(beside) if beside.exists() else None)
    if not found:
        raise ServerError(f"{name} not found; run `make setup`")
    return found


@dataclass
class Process:
    """One child process, stopped together with its own children."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    log: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    # Once stopped, its group is never signalled again: its id may belong to another by then.
    _stopped: bool = field(default=False, repr=False)
    # SIGTERM sent once: a second one makes some (Celery's worker) cut their shutdown short.
    _terminated: bool = field(default=False, repr=False)

    def start(self) -> Process:
        """Start it, appending to its log; also again, with the same argv and environment."""
        out: IO[bytes] | int | None = None
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = out = self.log.open("ab")
        self.popen = subprocess.Popen(
            list(self.argv),
            env=dict(self.env) if self.env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._stopped = self._terminated = False
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has ended (minus the signal that killed it), else None."""
        return None if self.popen is None else self.popen.poll()

    def send(self, sig: int) -> None:
        """Send ``sig`` to the process alone (not its children)."""
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and everything it started."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM), once; :meth:`stop` waits for it."""
        if self.alive() and not self._stopped and not self._terminated:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL whatever is left of the group."""
        if self.popen is None or self._stopped:
            return
        self.terminate()
        if self.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill_group(signal.SIGKILL)
        self.popen.wait()
        self._stopped = True
        if self._log_file is not None:
            self._log_file.close()


def stop_together(processes: Iterable[Process], timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """SIGTERM to each, then wait for them all within one ``timeout``: they shut down side
    by side, not one after another. Whatever is left then is killed with its group."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.stop(max(0.0, deadline - time.monotonic()))


def wait_until(check: Callable[[], bool], timeout: float, what: str, process: Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not process.alive():
            raise ServerError(f"{what} exited while starting (see {process.log})")
        time.sleep(0.05)
    process.stop()
    raise ServerError(f"{what} did not start within {timeout:.0f}s (see {process.log})")


def start_redis(
    data_dir: Path, port: int | None = None, *, aof: bool = True
) -> tuple[Process, str]:
    """A redis-server keeping its data in ``data_dir``; AOF with fsync every second."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        find_executable("redis-server"),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes" if aof else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
    ]  # fmt: skip
    process = Process("redis", argv, log=data_dir / "redis.log").start()
    wait_until(lambda: _redis_ping(port), 20, "redis-server", process)
    return process, f"redis://127.0.0.1:{port}/0"


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_mongo(data_dir: Path, port: int | None = None) -> tuple[Process, str]:
    """The embedded MongoDB-protocol server (SecantusDB), as its own process."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "jobline.local.embedded_mongo",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--storage-path", str(data_dir),
    ]  # fmt: skip
    process = Process("mongodb", argv, log=data_dir / "secantusd.log").start()
    wait_until(lambda: port_open(port), 60, "SecantusDB", process)
    return process, f"mongodb://127.0.0.1:{port}"


def jobline_argv(*args: str) -> list[str]:
    """Run a jobline command with this same interpreter."""
    return [sys.executable, "-m", "jobline", *args]
