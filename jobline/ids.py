"""Job ids: UUIDv7 strings, so sorting by id is sorting by creation time."""

from __future__ import annotations

import os
import re
import time
import uuid

_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_id(at_ms: int | None = None) -> str:
    """A fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits."""
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def is_id(value: str) -> bool:
    """Whether ``value`` is a well-formed job id (checked before any lookup)."""
    return bool(_JOB_ID.match(value))


def boundary_id(at_ms: int, *, upper: bool) -> str:
    """The smallest (or largest) id that a job created at ``at_ms`` could have."""
    fill = (1 << 80) - 1 if upper else 0
    return str(uuid.UUID(int=(at_ms & ((1 << 48) - 1)) << 80 | fill))
