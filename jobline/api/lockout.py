"""Key guessing: wrong API keys are counted per client address, in Redis.

Past ``JOBLINE_AUTH_FAILURES_PER_MINUTE`` wrong keys from one address, its
further wrong keys get 429 with ``Retry-After`` until the minute that began
with its first wrong key ends. Only wrong keys are counted, after the key was
looked up, so a valid key is never refused here and costs nothing more. The
count lives in the Redis every API process shares, kept by ``limits`` (the
library under Flask-Limiter). The client address is ``request.remote_addr``:
whoever connected, or with ``JOBLINE_PROXY_HOPS`` set, the address that many
proxies back in ``X-Forwarded-For`` (see :func:`jobline.api.create_app`).
An IPv6 client is counted by its /64, the block one subscriber is usually
given, so that it cannot start afresh by moving to the next address.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from jobline.core.errors import JoblineError
from jobline.core.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE = "jobline-auth-failures"


class TooManyFailures(JoblineError):
    """Too many wrong API keys from one client address this minute."""

    status = 429
    title = "Too many wrong API keys"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong API keys from this address; retry in {retry_after} s")
        self.headers = {"Retry-After": str(retry_after)}


def counted_as(address: str) -> str:
    """What wrong keys from ``address`` are counted under: the address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Lockout:
    """Counts wrong keys per address; refuses an address past its limit for the minute."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.connect_timeout_seconds
        storage = storage_from_string(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self.limit = RateLimitItemPerMinute(settings.auth_failures_per_minute)
        self.counter = FixedWindowRateLimiter(storage)

    def failed(self, address: str) -> None:
        """Count a wrong key from ``address``; TooManyFailures once it is past the limit."""
        subject = counted_as(address)
        try:
            if self.counter.hit(self.limit, NAMESPACE, subject):
                return
            reset_at = self.counter.get_window_stats(self.limit, NAMESPACE, subject).reset_time
        except (RedisError, OSError) as exc:
            # Redis down must not take the API down: the wrong key still gets its 401.
            log.warning("could not count a wrong API key: %s", type(exc).__name__)
            return
        raise TooManyFailures(max(1, math.ceil(reset_at - time.time())))
