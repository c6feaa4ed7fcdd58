"""Liveness and readiness probes, outside the versioned API."""

from __future__ import annotations

import threading
from collections.abc import Callable

import cachetools
import redis
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from jobline.api.services import pipeline
from jobline.core.errors import Unavailable
from jobline.engine import queue
from jobline.engine.pipeline import Pipeline

bp = Blueprint("health", __name__)


# A ping to the workers waits for a reply; probes every second must not each
# pay for one, so the answer is reused for a few seconds (per broker).
@cachetools.cached(
    cachetools.TTLCache(maxsize=16, ttl=3.0),
    key=lambda p: p.settings.broker,
    lock=threading.Lock(),
)
def _workers_answering(p: Pipeline) -> int:
    return queue.ping_workers(p.celery)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and serving."""
    return jsonify(status="ok")


def _workers_check() -> None:
    p = pipeline()
    answered = _workers_answering(p)
    if not answered:
        raise Unavailable("no worker answered a ping")


def _redis_check() -> None:
    url = pipeline().settings.redis_url
    timeout = pipeline().settings.connect_timeout_seconds
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        with client:
            client.ping()
    except redis.RedisError as exc:
        raise Unavailable(f"Redis unreachable: {type(exc).__name__}") from exc


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """MongoDB, the broker (and Redis, if separate) and a worker answer; 503 naming what not."""
    p = pipeline()
    checks: dict[str, Callable[[], None]] = {
        "mongodb": p.store.ping,
        "broker": lambda: queue.ping_broker(p.celery),
    }
    if p.settings.redis_url != p.settings.broker:
        checks["redis"] = _redis_check
    checks["workers"] = _workers_check
    results: dict[str, str] = {}
    for name, check in checks.items():
        if name == "workers" and results["broker"] != "ok":
            results[name] = "not checked: the broker is unreachable"
            continue
        try:
            check()
            results[name] = "ok"
        except Unavailable as exc:
            results[name] = str(exc)
    ready = all(v == "ok" for v in results.values())
    response = jsonify(status="ok" if ready else "unavailable", checks=results)
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "5"
    return response
