"""`/metrics` for Prometheus, and the timing and logging of every request."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, g, request

from jobline.api import auth
from jobline.api.services import pipeline
from jobline.engine import metrics

log = logging.getLogger("jobline.api")

bp = Blueprint("metrics", __name__)


@bp.get("/metrics", endpoint="metrics")
def metrics_view() -> Response:
    """Counters and histograms of this API (all its processes) and the queues' depth.

    Served without a key, like the health probes: it shows counts by job type,
    never a job. Keep the API port off the public internet or scrape through a
    proxy if even that is too much.
    """
    p = pipeline()
    depth = metrics.QueueDepth(p.celery, lambda: ["default", *(t.queue for t in p.catalogue)])
    # content_type, not mimetype: Flask adds "; charset=utf-8" to a text/* mimetype,
    # and the exposition format's type already carries its charset.
    return Response(metrics.exposition(depth), content_type=metrics.CONTENT_TYPE)


def instrument(app: Flask) -> None:
    """Time every request (by URL rule, not raw path) and log it as one line."""

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.HTTP_LATENCY.labels(rule, request.method, str(response.status_code)).observe(
            elapsed
        )
        if request.endpoint != "metrics.metrics":
            log.info(
                "%s %s %s",
                request.method,
                rule,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration": round(elapsed, 4),
                    "owner": auth.owner(),
                },
            )
        return response
