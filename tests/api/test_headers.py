"""Security headers: every answer carries the CSP, nosniff, no framing and a Referrer-Policy."""

from __future__ import annotations

import pytest
import requests

from jobline.api.payloads import GUNICORN_REQUEST_LINE, MAX_URI_BYTES
from tests.conftest import Api, Gunicorn

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


def _made(idle_api: Api) -> dict[str, str]:
    """One of each thing the API deletes with a 204, by its URL."""
    noop = {"type": "noop"}
    upload = idle_api.post("/api/v1/files", files={"file": ("a.txt", b"x", "text/plain")})
    made = {
        "job": idle_api.post("/api/v1/jobs", json=noop),
        "calculation": idle_api.post(
            "/api/v1/calculations", json={"name": "Ada", "weight": 55, "height": 170}
        ),
        "schedule": idle_api.post("/api/v1/schedules", json={**noop, "interval_seconds": 3600}),
        "workflow": idle_api.post("/api/v1/workflows", json={"steps": [{"id": "a", **noop}]}),
        "file": upload,
    }
    assert all(r.status_code in (201, 202) for r in made.values()), [r.text for r in made.values()]
    return {name: r.headers["Location"] for name, r in made.items()}


def test_answers_without_a_body_carry_no_content_type(idle_api: Api) -> None:
    for name, url in _made(idle_api).items():
        response = idle_api.delete(url)
        assert response.status_code == 204, (name, response.text)
        assert "Content-Type" not in response.headers, name
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    upload = idle_api.post("/api/v1/files", files={"file": ("b.txt", b"y", "text/plain")}).json()
    content = f"/api/v1/files/{upload['id']}/content"
    etag = idle_api.get(content).headers["ETag"]
    not_modified = idle_api.get(content, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert "Content-Type" not in not_modified.headers


def _security_headers(response: requests.Response) -> bool:
    return response.headers.get("X-Content-Type-Options") == "nosniff" and (
        "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", "")
    )


def test_a_uri_too_long_is_a_414_problem_with_the_security_headers_under_gunicorn(
    gunicorn_api: Gunicorn,
) -> None:
    path = "/api/v1/jobs?x="
    fits = requests.get(gunicorn_api.base + path + "a" * (MAX_URI_BYTES - len(path)), timeout=10)
    assert fits.status_code == 401  # read as usual: keys are required there
    # Past the API's limit, but within the request line gunicorn lets through.
    long = requests.get(gunicorn_api.base + path + "a" * (MAX_URI_BYTES + 1), timeout=10)
    assert long.status_code == 414
    assert long.headers["Content-Type"] == "application/problem+json"
    assert long.json()["detail"] == f"URIs are limited to {MAX_URI_BYTES} bytes"
    assert _security_headers(long)
    longest = "a" * (GUNICORN_REQUEST_LINE - len(f"GET {path} HTTP/1.1"))
    assert requests.get(gunicorn_api.base + path + longest, timeout=10).json()["status"] == 414
    # Past gunicorn's largest limit the app never sees it: still a 414, gunicorn's own page.
    past = requests.get(gunicorn_api.base + path + "a" * GUNICORN_REQUEST_LINE, timeout=10)
    assert past.status_code == 414
