"""Security headers on every answer: a strict Content-Security-Policy, no sniffing, no framing.

One policy for the API, the board and Swagger UI: scripts, styles and fetches
from this origin only, never inline and never ``eval`` (the board uses
Alpine's CSP build, Swagger UI a page of our own, :mod:`jobline.api.swagger`).
Images may also be ``data:`` URLs, which Swagger UI's stylesheet uses for icons.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # frame-ancestors' older spelling, for browsers that predate it.
    "X-Frame-Options": "DENY",
}


def init_app(app: Flask) -> None:
    """Send the headers with every response, errors and static files included."""

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if response.status_code == 204:
            # A 204 has no body, so nothing for a type to describe; Flask gives every
            # Response text/html. (Werkzeug already strips it from a 304.)
            del response.headers["Content-Type"]
        return response
