"""Job ids: UUIDv7 strings, so sorting by id is sorting by creation time."""

from __future__ import annotations

import re
import uuid

import uuid_utils

_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_id(at_ms: int | None = None) -> str:
    """A fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a counter and random bits.

    Without ``at_ms``, ids made by one process strictly increase, even within a
    millisecond (uuid-utils keeps RFC 9562's counter, and reseeds after a fork),
    so a batch of jobs lists in its order. ``at_ms`` makes an id of that moment.
    """
    if at_ms is None:
        return str(uuid_utils.uuid7())
    return str(uuid_utils.uuid7(nanoseconds=at_ms * 1_000_000))


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
