"""Swagger UI at ``/api/v1/docs``, from a page of our own, and what the spec says of errors.

Flask-RESTX's page starts Swagger UI from an inline script and styles it
inline, which the Content-Security-Policy forbids; ours loads the same
Swagger UI files, and starts it from ``static/swagger-init.js``, reading its
settings from the page's data attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import render_template
from flask_restx import Api

from jobline.api.payloads import MAX_URI_BYTES
from jobline.api.problems import PROBLEM_JSON, PROBLEM_SCHEMA

# Answers every operation can give, from hooks that run before any handler
# (keys, the URI and body limits, the query-string rule, the rate limit): said once here,
# not on each operation. An operation's own description of a code wins.
EVERY_OPERATION = {
    "401": "No API key, or one unknown or revoked (when JOBLINE_AUTH is on)",
    "413": "A body past JOBLINE_MAX_BODY_BYTES",
    "414": f"A URI (path and query string) past {MAX_URI_BYTES} bytes",
    "422": "Invalid input, each bad field named; or a query parameter it does not read",
    "429": "Past JOBLINE_RATE_LIMIT, or too many wrong keys from this address; see Retry-After",
}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


def page(api: Api) -> Callable[[], str]:
    """The view rendering ``api``'s Swagger UI."""

    def docs() -> str:
        return render_template("swagger-ui-csp.html", title=api.title, specs_url=api.specs_url)

    return docs


def document_problems(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every error answer a Problem, and the answers every operation can give."""
    spec.setdefault("definitions", {})["Problem"] = PROBLEM_SCHEMA
    if PROBLEM_JSON not in spec.get("produces", []):
        spec["produces"] = [*spec.get("produces", []), PROBLEM_JSON]
    problem = {"$ref": "#/definitions/Problem"}
    for path in spec.get("paths", {}).values():
        for method in HTTP_METHODS:
            if method not in path:
                continue
            responses = path[method].setdefault("responses", {})
            for code, description in EVERY_OPERATION.items():
                responses.setdefault(code, {"description": description})
            for code, response in responses.items():
                if int(code) >= 400:
                    response.setdefault("schema", problem)
    return spec
