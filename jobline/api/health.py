"""Liveness and readiness probes, outside the versioned API."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from jobline import queue
from jobline.api.services import pipeline
from jobline.errors import Unavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and serving."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """MongoDB and the broker are reachable; 503 naming what is not."""
    p = pipeline()
    checks: dict[str, str] = {}
    for name, check in (("mongodb", p.store.ping), ("broker", lambda: queue.ping_broker(p.celery))):
        try:
            check()
            checks[name] = "ok"
        except Unavailable as exc:
            checks[name] = str(exc)
    ready = all(v == "ok" for v in checks.values())
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "5"
    return response
