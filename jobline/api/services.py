"""Where request handlers find the pipeline built by the app factory."""

from __future__ import annotations

from flask import current_app

from jobline.engine.pipeline import Pipeline

EXTENSION = "jobline"


def pipeline() -> Pipeline:
    """The current app's pipeline (store, Celery app and catalogue)."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
