"""The raw Celery baseline: a no-op task on jobline's own Celery configuration."""

from __future__ import annotations

from bench.counter import count_done
from jobline.core.settings import Settings
from jobline.engine.queue import make_celery

app = make_celery(Settings())


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    count_done()
