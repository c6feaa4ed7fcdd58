"""Celery with its own MongoDB result backend, behind the same minimal Flask-RESTX API.

The other way people record jobs in MongoDB: Celery's ``mongodb://`` result
backend with ``task_track_started`` (a STARTED write per task) and
``acks_late``, as a user wanting crash safety and a status would set it.

    gunicorn bench.celery_backend:api
    celery -A bench.celery_backend worker
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from bench.counter import count_done
from bench.peer_api import create_api

app = Celery(
    "backend",
    broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/5"),
    backend=os.environ.get("BENCH_MONGO_URL", "mongodb://127.0.0.1:27017") + "/celery_bench",
)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_track_started=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


@app.task(name="backend.compute")
def compute(payload: dict[str, Any]) -> dict[str, Any]:
    return {"payload": payload}


@signals.task_success.connect
def _counted(**_: Any) -> None:
    # Sent after the backend has stored the result: completion means recorded.
    count_done()


api = create_api(compute)
