"""A sampling profiler of every thread's CPU time, in whichever process imports it.

py-spy cannot read other processes' memory on every machine (it cannot on the
one the figures in docs/performance.md come from), and pyinstrument profiles
one thread; the API and SecantusDB serve each connection on a thread of its
own. So: every few milliseconds a daemon thread takes each other thread's
stack, but counts it only if that thread spent CPU since the last look (its
own CPU clock, ``pthread_getcpuclockid``), weighted by how much. Counts are
written every two seconds to ``<dir>/<pid>.json``, so a process that ends with
``os._exit`` (Celery's pool) still leaves them; touching ``<dir>/reset`` starts
the counts afresh. Started by bench/profiling/
sitecustomize.py when BENCH_PROFILE_DIR is set; see bench/profile.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

INTERVAL = 0.004
# A thread found waiting in one of these spent its CPU before it got there, on a
# stack that is gone: its interval is counted as unattributed, not charged here.
WAITING = frozenset({"_recv_exactly", "_read_from_socket", "recv_into", "recv", "_recv",
                     "wait", "poll", "select", "accept", "sleep", "readinto", "get",
                     "_wait_for_tstate_lock", "_worker", "_run", "read"})  # fmt: skip
WRITE_EVERY = 2.0


def _where(frame: FrameType) -> str:
    code = frame.f_code
    parts = Path(code.co_filename).parts
    short = "/".join(parts[parts.index("site-packages") + 1 :] if "site-packages" in parts
                     else parts[-2:])  # fmt: skip
    return f"{short}:{code.co_name}"


class Sampler:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.own: Counter[str] = Counter()  # CPU µs with the function on top
        self.inclusive: Counter[str] = Counter()  # CPU µs with the function anywhere
        self.cpu_us = 0
        self.unattributed = 0
        self.clocks: dict[int, float] = {}
        self.reset_at = 0.0

    def reset_if_asked(self) -> None:
        """Start counting afresh once ``<dir>/reset`` is touched (after a warm-up)."""
        try:
            asked = (self.out.parent / "reset").stat().st_mtime
        except OSError:
            return
        if asked > self.reset_at:
            self.reset_at = asked
            self.own.clear()
            self.inclusive.clear()
            self.cpu_us = self.unattributed = 0

    def sample(self) -> None:
        me = threading.get_ident()
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            try:
                cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
            except (OSError, OverflowError):
                continue
            spent = cpu - self.clocks.get(ident, cpu)
            self.clocks[ident] = cpu
            if spent <= 0:
                continue
            weight = int(spent * 1e6)
            self.cpu_us += weight
            if frame.f_code.co_name in WAITING:
                self.unattributed += weight
                continue
            self.own[_where(frame)] += weight
            seen: set[str] = set()
            f: FrameType | None = frame
            while f is not None:
                where = _where(f)
                if where not in seen:
                    seen.add(where)
                    self.inclusive[where] += weight
                f = f.f_back

    def write(self) -> None:
        body = {"argv": sys.argv, "cpu_us": self.cpu_us, "unattributed_us": self.unattributed,
                "own": self.own.most_common(60),
                "inclusive": self.inclusive.most_common(120)}  # fmt: skip
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self.out)

    def run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(INTERVAL)
            self.sample()
            if time.monotonic() - last >= WRITE_EVERY:
                self.reset_if_asked()
                self.write()
                last = time.monotonic()


def start(directory: str) -> None:
    """Sample this process (and, after a fork, each child) into ``directory``."""

    def begin() -> None:
        sampler = Sampler(Path(directory) / f"{os.getpid()}.json")
        threading.Thread(target=sampler.run, name="bench-sampler", daemon=True).start()

    os.register_at_fork(after_in_child=begin)
    begin()
