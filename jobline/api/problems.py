"""Every error the API answers, as an RFC 9457 problem document, decided in one place."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from jobline.core.errors import JoblineError, Unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# What problem() writes, for the spec (swagger.document_problems).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": f"An RFC 9457 problem document, sent as {PROBLEM_JSON}",
    "required": ["type", "title", "status", "detail", "errors"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "one entry per bad field, where there are fields to name",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": 'where: ["params", "weight"], ["query", "limit"]; '
                        "list indexes are integers",
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


class BadRequest(JoblineError):
    """The request is malformed (not JSON, bad query string)."""

    status = 400
    title = "Bad request"


class UnsupportedMediaType(JoblineError):
    status = 415
    title = "Unsupported media type"


class InvalidInput(JoblineError):
    """The request parsed but its values are wrong; carries one entry per bad field."""

    status = 422
    title = "Invalid input"

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def from_validation(
        cls, exc: ValidationError, prefix: tuple[str | int, ...] = ()
    ) -> InvalidInput:
        errors = [
            {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in errors)
        return cls(f"invalid value for: {fields}", errors)


def problem(
    status: int,
    title: str,
    detail: str = "",
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_exception(exc: BaseException) -> Response:
    """The problem document for any exception; unknown ones are logged, never shown."""
    if isinstance(exc, ValidationError):
        exc = InvalidInput.from_validation(exc)
    if isinstance(exc, JoblineError):
        headers = dict(getattr(exc, "headers", {}))
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(exc.retry_after)
        errors = getattr(exc, "errors", None)
        return problem(exc.status, exc.title, str(exc), errors, headers)
    if isinstance(exc, HTTPException):
        if exc.response is not None:  # already a problem (the rate limiter's 429)
            return exc.response  # type: ignore[return-value]
        code = exc.code or 500
        headers = {}
        if code == 405 and exc.get_response().headers.get("Allow"):
            headers["Allow"] = exc.get_response().headers["Allow"]
        return problem(code, exc.name, exc.description or "", headers=headers)
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "the server failed to handle this request")
