"""Security headers: every answer carries the CSP, nosniff, no framing and a Referrer-Policy."""

from __future__ import annotations

import pytest

from tests.conftest import Api

ANSWERS = [
    ("GET", "/api/v1/job-types", 200),
    ("GET", "/api/v1/jobs/nope", 404),
    ("POST", "/api/v1/jobs", 415),
    ("GET", "/api/v1/docs", 200),
    ("GET", "/api/v1/swagger.json", 200),
    ("GET", "/api/v1/static/swagger-init.js", 200),
    ("GET", "/", 200),
    ("GET", "/dashboard/static/dashboard.js", 200),
    ("GET", "/healthz", 200),
    ("GET", "/metrics", 200),
]


@pytest.mark.parametrize(("method", "path", "status"), ANSWERS)
def test_every_answer_carries_the_security_headers(
    api: Api, method: str, path: str, status: int
) -> None:
    response = api.request(method, path)
    assert response.status_code == status
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert "unsafe" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_docs_page_has_no_inline_script_or_style(api: Api) -> None:
    page = api.get("/api/v1/docs").text
    assert page.count("<script") == page.count("<script src=")
    assert "<style" not in page
    assert "style=" not in page
