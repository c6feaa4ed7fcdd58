"""The RQ peer: a no-op function a worker pool runs."""

from __future__ import annotations

from bench.counter import count_done


def noop() -> None:
    count_done()
