"""Reading requests and writing jobs: strict JSON in, one job representation out."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from jobline.api.problems import BadRequest, InvalidInput, UnsupportedMediaType
from jobline.store import Job

M = TypeVar("M", bound=BaseModel)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def json_body() -> Any:
    """The request body as JSON; 415 for other media types, 400 for malformed JSON."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def parse(model: type[M], data: Any, *, prefix: tuple[str | int, ...] = ()) -> M:
    """Validate ``data`` with ``model``; InvalidInput naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, prefix) from None


def query(model: type[M]) -> M:
    """Validate the query string; a parameter given twice is refused, not guessed."""
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        args[key] = values[0] if len(values) == 1 else values
    return parse(model, args, prefix=("query",))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job) -> dict[str, Any]:
    """The public representation of a job record."""
    progress = job.get("progress") or 0.0
    return {
        "id": job["_id"],
        "type": job["type"],
        "status": job["status"],
        "params": job.get("params"),
        "result": job.get("result"),
        "error": job.get("error"),
        "progress": progress if math.isfinite(progress) else 0.0,
        "progress_message": job.get("progress_message"),
        "attempts": job.get("attempts", 0),
        "queue": job.get("queue"),
        "priority": job.get("priority"),
        "run_at": _iso(job.get("run_at")),
        "created_at": _iso(job.get("created_at")),
        "started_at": _iso(job.get("started_at")),
        "finished_at": _iso(job.get("finished_at")),
        "schedule_id": job.get("schedule_id"),
        "callback_url": job.get("callback_url"),
        "webhook": _webhook(job.get("webhook")),
    }


def _webhook(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """How the job's webhook deliveries went, if it asked for one."""
    if not record:
        return None
    return {
        "attempts": record.get("attempts", 0),
        "last_status": record.get("last_status"),
        "delivered_at": _iso(record.get("delivered_at")),
        "last_error": record.get("last_error"),
    }
