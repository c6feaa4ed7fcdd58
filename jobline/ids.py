"""Job ids: UUIDv7 strings, so sorting by id is sorting by creation time."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


_RANDOM_BITS = 74  # a UUIDv7's bits besides its time, version and variant
_last = (0, 0)  # (milliseconds, random bits) of the last id this process made
_lock = threading.Lock()


def new_id(at_ms: int | None = None) -> str:
    """A fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Without ``at_ms``, ids made by one process strictly increase, even within a
    millisecond (RFC 9562 6.2, method 2), so a batch of jobs lists in its order.
    """
    global _last
    rand = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS)
    if at_ms is not None:
        return _uuid7(at_ms, rand)
    ms = int(time.time() * 1000)
    with _lock:
        last_ms, last_rand = _last
        if ms <= last_ms:  # the same millisecond, or the clock stepped back
            ms, rand = last_ms, last_rand + 1
            if rand >> _RANDOM_BITS:
                ms, rand = ms + 1, 0
        _last = (ms, rand)
    return _uuid7(ms, rand)


def _uuid7(ms: int, rand: int) -> str:
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0x2 << 62 | rand_b
    return str(uuid.UUID(int=value))


def timestamp_ms(job_id: str) -> int:
    """The Unix milliseconds a UUIDv7 was made at."""
    return uuid.UUID(job_id).int >> 80


def is_id(value: str) -> bool:
    """Whether ``value`` is a well-formed job id (checked before any lookup)."""
    return bool(_JOB_ID.match(value))


def boundary_id(at_ms: int, *, upper: bool) -> str:
    """The smallest (or largest) id that a job created at ``at_ms`` could have."""
    fill = (1 << 80) - 1 if upper else 0
    return str(uuid.UUID(int=(at_ms & ((1 << 48) - 1)) << 80 | fill))
