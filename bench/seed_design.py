"""The seed's own design, written for the bench: Flask-RESTX POST → Celery task → insert_one.

What jobline grew out of, at its smallest: the API hands the payload to a
Celery task and answers 202; the task computes and stores its result with one
``insert_one`` in MongoDB (no indexes beyond ``_id``, no status, no claim).

    gunicorn bench.seed_design:api          # the HTTP side
    celery -A bench.seed_design worker      # the worker

Both read the servers from BENCH_MONGO_URL and BENCH_BROKER_URL.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from pymongo import MongoClient

from bench.counter import count_done
from bench.peer_api import create_api

app = Celery("seed", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/4"))
# The seed's own settings: JSON, no result backend (the task writes its result).
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                worker_hijack_root_logger=False)  # fmt: skip
_results: Any = None


def results() -> Any:
    """The results collection, opened in the process that uses it (after fork)."""
    global _results
    if _results is None:
        client: MongoClient[dict[str, Any]] = MongoClient(os.environ["BENCH_MONGO_URL"])
        _results = client["seed_bench"]["results"]
    return _results


@app.task(name="seed.compute", bind=True)
def compute(self: Any, payload: dict[str, Any]) -> None:
    results().insert_one({"_id": self.request.id, "payload": payload, "result": {}})
    count_done()


api = create_api(compute)
