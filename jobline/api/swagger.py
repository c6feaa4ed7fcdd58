"""Swagger UI at ``/api/v1/docs``, from a page of our own.

Flask-RESTX's page starts Swagger UI from an inline script and styles it
inline, which the Content-Security-Policy forbids; ours loads the same
Swagger UI files, and starts it from ``static/swagger-init.js``, reading its
settings from the page's data attributes.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import render_template
from flask_restx import Api


def page(api: Api) -> Callable[[], str]:
    """The view rendering ``api``'s Swagger UI."""

    def docs() -> str:
        return render_template("swagger-ui-csp.html", title=api.title, specs_url=api.specs_url)

    return docs
