"""Reading requests and writing jobs: strict JSON in, one job representation out."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from jobline.api.problems import BadRequest, InvalidInput, UnsupportedMediaType
from jobline.store import Job

M = TypeVar("M", bound=BaseModel)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def refuse_oversized() -> None:
    """413 for a declared body past the limit, even on endpoints that never read one."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and limit and request.content_length > limit:
        raise RequestEntityTooLarge(f"bodies are limited to {limit} bytes")


def json_body() -> Any:
    """The request body as JSON; 415 for other media types, 400 for malformed JSON."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None


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
    }
