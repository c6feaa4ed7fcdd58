"""OpenAPI models shared by the resources, derived from the pydantic models."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace
from flask_restx.model import SchemaModel
from pydantic import BaseModel

from jobline.api.problems import BadRequest

LIST_PARAMS = {
    "limit": {"description": "page size, 1 to 500", "type": "integer", "default": 50},
    "cursor": {"description": "next_cursor of the previous page", "type": "string"},
}

_NULLABLE_STRING = {"type": "string", "x-nullable": True}

JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "queued",
                "scheduled",
                "running",
                "retrying",
                "succeeded",
                "failed",
                "cancelled",
            ],
        },
        "params": {"type": "object"},
        "result": {"type": "object", "x-nullable": True},
        "error": {"type": "object", "x-nullable": True},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "progress_message": _NULLABLE_STRING,
        "attempts": {"type": "integer"},
        "queue": {"type": "string"},
        "priority": {"type": "integer", "x-nullable": True},
        "run_at": {**_NULLABLE_STRING, "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {**_NULLABLE_STRING, "format": "date-time"},
        "finished_at": {**_NULLABLE_STRING, "format": "date-time"},
        "schedule_id": {**_NULLABLE_STRING, "description": "the schedule that submitted it"},
        "callback_url": {**_NULLABLE_STRING, "format": "uri"},
        "webhook": {
            "type": "object",
            "x-nullable": True,
            "description": "delivery of the job to callback_url once it ended",
            "properties": {
                "attempts": {"type": "integer"},
                "last_status": {"type": "integer", "x-nullable": True},
                "delivered_at": {**_NULLABLE_STRING, "format": "date-time"},
                "last_error": _NULLABLE_STRING,
            },
        },
    },
}


def _swagger2(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic writes JSON Schema 2020-12; Swagger 2.0 wants boolean exclusive bounds."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif isinstance(value, dict):
            out[key] = _swagger2(value)
        else:
            out[key] = value
    return out


def schema_model(ns: Namespace, name: str, model: type[BaseModel]) -> SchemaModel:
    """A Swagger model generated from a pydantic model, so the docs cannot drift."""
    return ns.schema_model(name, _swagger2(model.model_json_schema()))


def job_model(ns: Namespace) -> SchemaModel:
    return ns.schema_model("Job", JOB_SCHEMA)


def page_model(ns: Namespace, item: SchemaModel) -> SchemaModel:
    return ns.schema_model(
        "JobPage",
        {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/definitions/Job"}},
                "next_cursor": _NULLABLE_STRING,
            },
        },
    )


def bad_cursor(exc: Exception) -> BadRequest:
    return BadRequest(f"{exc}: pass the next_cursor of a previous page unchanged")
