"""The spec documents the problems each operation can answer, each as a Problem."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

# What any operation can answer: a key refused, a body or URI past the limit, a
# query parameter it does not read, the rate limit.
EVERY = {401, 413, 414, 422, 429}
BODY = EVERY | {400, 415, 503}  # and a body that is not JSON, or names a key twice

POSTS = {
    "/jobs": BODY | {409},  # an Idempotency-Key reused for another request
    "/jobs:batch": BODY,
    "/calculations": BODY | {409},
    "/schedules": BODY,
    "/workflows": BODY,
    "/files": BODY,  # 415 for not multipart, 400 for a body cut short
    "/jobs/{job_id}/cancel": EVERY | {404, 503},
    "/jobs/{job_id}/retry": EVERY | {404, 409, 503},
    "/calculations/{pid}/cancel": EVERY | {404, 503},
    "/calculations/{pid}/retry": EVERY | {404, 409, 503},
    "/workflows/{workflow_id}/cancel": EVERY | {404, 503},
    "/workflows/{workflow_id}/retry": EVERY | {404, 409, 503},
}


@pytest.fixture(scope="module")
def spec(idle_served: Any) -> dict[str, Any]:
    response = Api(idle_served.base).get("/api/v1/swagger.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _errors(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"] if int(code) >= 400}


@pytest.mark.parametrize(("path", "codes"), POSTS.items(), ids=list(POSTS))
def test_each_post_documents_the_problems_it_can_answer(
    spec: dict[str, Any], path: str, codes: set[int]
) -> None:
    assert _errors(spec["paths"][path]["post"]) == codes


def test_every_post_of_the_api_is_in_the_table(spec: dict[str, Any]) -> None:
    assert {path for path, ops in spec["paths"].items() if "post" in ops} == set(POSTS)


def test_every_error_answer_in_the_spec_is_a_problem_with_the_fields_a_problem_has(
    spec: dict[str, Any], idle_api: Api
) -> None:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue  # the path's own parameters
            assert _errors(operation) >= EVERY, (method, path)
            for code in _errors(operation):
                schema = operation["responses"][str(code)]["schema"]
                assert schema == {"$ref": "#/definitions/Problem"}, (method, path, code)
    problem = idle_api.post("/api/v1/jobs", data="x").json()  # a real one: 415
    assert set(spec["definitions"]["Problem"]["properties"]) == set(problem)
    assert "application/problem+json" in spec["produces"]
