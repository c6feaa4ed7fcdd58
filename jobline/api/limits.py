"""Rate limits per API key (per address when auth is off), kept in Redis by Flask-Limiter."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter, RequestLimit

from jobline.api import auth, problems
from jobline.core.settings import Settings

# Probes and scrapes are never limited.
EXEMPT = frozenset({"health.healthz", "health.readyz", "metrics.metrics"})


def _who() -> str:
    p = auth.principal()
    return f"key:{p.name}" if p else f"addr:{request.remote_addr}"


def _too_many(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.reset_at - time.time()))
    return problems.problem(
        429,
        "Too many requests",
        f"rate limit of {limit.limit} exceeded; retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def init_app(app: Flask, settings: Settings) -> Limiter | None:
    """Apply JOBLINE_RATE_LIMIT to every endpoint; nothing when it is empty."""
    if not settings.rate_limit.strip():
        return None
    timeout = settings.connect_timeout_seconds
    redis_options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    limiter = Limiter(
        key_func=_who,
        default_limits=[settings.rate_limit],
        default_limits_exempt_when=lambda: request.endpoint in EXEMPT,
        storage_uri=settings.redis_url,
        storage_options=redis_options,
        key_prefix="jobline",
        on_breach=_too_many,
        # Redis down must not take the API down with it: requests pass unlimited.
        swallow_errors=True,
        headers_enabled=False,
    )
    limiter.init_app(app)
    return limiter
