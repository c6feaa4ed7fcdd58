"""The board at ``/``: the people's view of jobs, live, served as static files.

One HTML page, one stylesheet, one script and a vendored copy of Alpine.js (its
CSP build: the page runs under a policy with no inline script and no eval):
no build step. The page talks to the public API only (``/api/v1``) and follows
``/api/v1/events`` for live changes. Imports the core only: the app factory
hands it the settings.
"""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from jobline.core.settings import Settings


def blueprint(settings: Settings) -> Blueprint:
    """The board's blueprint: its page, and its static files under ``/dashboard/static``."""
    bp = Blueprint(
        "dashboard",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/dashboard/static",
    )

    @bp.get("/")
    def index() -> ResponseReturnValue:
        """The board: a form to submit any job type, and the jobs, newest first, live."""
        page = render_template(
            "dashboard.html",
            flower_url=settings.flower_url,
            api_base="/api/v1",
            auth=settings.auth,
            resync_ms=int(settings.board_resync_seconds * 1000),
        )
        return page, 200, {"Cache-Control": "no-cache"}

    return bp
