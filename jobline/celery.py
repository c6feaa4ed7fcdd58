"""The Celery app that Celery's own tools load: ``celery -A jobline inspect ping``.

``celery -A jobline`` finds this module the way Celery finds an app in any
package (``jobline.app``, ``jobline.celery``, then the submodule
``jobline.celery``). It is built from the ``JOBLINE_*`` environment, with the
URLs of a ``jobline up`` running on ``JOBLINE_DATA_DIR`` (default ``.jobline``
under the current directory) filling in what it leaves unset, as for every
jobline command. It holds no tasks: importing it imports no job module and
opens no connection. Workers
start with ``jobline worker``, which registers the tasks and loads the job
modules; a worker started from this app would take jobs it cannot run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from celery import Celery, bootsteps

from jobline.core import local_stack
from jobline.core.settings import Settings
from jobline.engine.queue import make_celery


class RefuseToWork(bootsteps.Step):  # type: ignore[misc]
    """Stops ``celery -A jobline worker`` before it consumes a message."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        # Unregistered here, jobline's tasks would be acknowledged and dropped.
        raise click.ClickException(
            "jobline's workers start with `jobline worker`, which loads the job types; "
            "`celery -A jobline` is for inspect, status, control, events and flower"
        )


def create_tools_app(settings: Settings | None = None) -> Celery:
    """jobline's Celery settings (broker, serializer, priorities), without its tasks."""
    if settings is None:
        data_dir = Path(os.environ.get("JOBLINE_DATA_DIR") or local_stack.DEFAULT_DATA_DIR)
        settings = local_stack.resolve(data_dir).settings
    app = make_celery(settings)
    app.steps["worker"].add(RefuseToWork)
    return app


app = create_tools_app()
