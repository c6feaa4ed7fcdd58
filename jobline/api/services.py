"""Where request handlers find the pipeline built by the app factory, and its other stores."""

from __future__ import annotations

from flask import current_app

from jobline.engine.pipeline import Pipeline
from jobline.store.files import FileStore
from jobline.store.logs import LogStore

EXTENSION = "jobline"


def pipeline() -> Pipeline:
    """The current app's pipeline (store, Celery app and catalogue)."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def files() -> FileStore:
    """GridFS on the job store's database."""
    p = pipeline()
    return FileStore.of(p.settings, p.store.db)


def logs() -> LogStore:
    """The job logs on the job store's database."""
    return LogStore(pipeline().store.db)
