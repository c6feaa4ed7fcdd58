"""The minimal Flask-RESTX API both peer designs share: POST a payload, get 202 and an id."""

from __future__ import annotations

from typing import Any

from celery import Task
from flask import Flask
from flask_restx import Api, Resource


def create_api(task: Task) -> Flask:
    """``POST /api/v1/jobs`` hands its body to ``task`` and answers 202 with the task's id."""
    flask = Flask(__name__)
    api = Api(flask, prefix="/api/v1", doc=False)

    @api.route("/jobs")
    class Jobs(Resource):  # type: ignore[misc]
        def post(self) -> tuple[dict[str, Any], int]:
            sent = task.delay(api.payload or {})
            return {"id": sent.id, "status": "queued"}, 202

    return flask
