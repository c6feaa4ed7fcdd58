"""Schema-driven fuzzing of the whole API from its own OpenAPI spec: never a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import ServedApp

# Per operation; the whole run stays well under a minute. (Headers: lowercase keys, list values.)
EXAMPLES = 30


def _fuzz(operation: schemathesis.APIOperation) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples each run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(timeout=10)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == ["application/problem+json"]
            assert "Traceback" not in response.text

    run()


def test_no_request_generated_from_the_spec_gets_a_server_error(idle_served: ServedApp) -> None:
    # Loaded and driven by hand: schemathesis' pytest fixture loader does not
    # work with pytest 9 yet.
    schema = schemathesis.openapi.from_url(idle_served.base + "/api/v1/swagger.json")
    # Event streams stay open by design; their ids are in the bad-input table instead.
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if not op.path.endswith("/events")
    ]
    assert len(operations) >= 6
    for operation in operations:
        _fuzz(operation)
