"""Key guessing: past the limit of wrong keys a minute, one address gets 429; valid keys pass.

The API here sits behind one (pretend) proxy (JOBLINE_PROXY_HOPS=1), so each
test speaks from an address of its own in X-Forwarded-For and no count leaks
between tests. The limit is three wrong keys a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from jobline.api import create_app
from jobline.api.lockout import counted_as
from jobline.core.settings import Settings
from tests.conftest import Api, ServedApp, idle_settings

LIMIT = 3
TYPES = "/api/v1/job-types"


@pytest.fixture(scope="module")
def guarded(settings: Settings) -> Iterator[tuple[ServedApp, ServedApp]]:
    """Two API processes' worth of apps sharing one Redis, keys required, behind one proxy."""
    guarded = idle_settings(settings, auth=True, auth_failures_per_minute=LIMIT, proxy_hops=1)
    apps = (ServedApp(create_app(guarded)), ServedApp(create_app(guarded)))
    yield apps
    for app in apps:
        app.close()


def client(served: ServedApp, address: str, key: str = "wrong-key-0123456789") -> Api:
    api = Api(served.base, key)
    api.http.headers["X-Forwarded-For"] = address
    return api


def test_past_the_limit_wrong_keys_get_429_with_retry_after_and_a_valid_key_still_passes(
    guarded: tuple[ServedApp, ServedApp], api_keys: dict[str, str]
) -> None:
    served, _ = guarded
    guesser = client(served, "203.0.113.10")
    assert [guesser.get(TYPES).status_code for _ in range(LIMIT)] == [401] * LIMIT
    refused = guesser.get(TYPES)
    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "wrong API keys" in refused.json()["detail"]
    assert client(served, "203.0.113.10", api_keys["alice"]).get(TYPES).status_code == 200
    assert client(served, "203.0.113.11").get(TYPES).status_code == 401


def test_wrong_keys_are_counted_across_api_processes(
    guarded: tuple[ServedApp, ServedApp],
) -> None:
    first, second = (client(served, "203.0.113.20") for served in guarded)
    codes = [api.get(TYPES).status_code for api in (first, second, first)]
    assert codes == [401] * LIMIT
    assert second.get(TYPES).status_code == 429
    assert first.get(TYPES).status_code == 429


def test_a_client_cannot_escape_the_count_by_writing_its_own_forwarded_for(
    guarded: tuple[ServedApp, ServedApp],
) -> None:
    served, _ = guarded
    codes = []
    for i in range(LIMIT + 2):
        # The client's own entries come first; the proxy appends the address it saw.
        api = client(served, f"198.51.100.{i}, 203.0.113.30")
        codes.append(api.get(TYPES).status_code)
    assert codes == [401] * LIMIT + [429, 429]


def test_an_ipv6_client_is_counted_by_its_64_block(
    guarded: tuple[ServedApp, ServedApp],
) -> None:
    served, _ = guarded
    codes = [
        client(served, f"2001:db8:17:b::{i:x}").get(TYPES).status_code for i in range(LIMIT + 1)
    ]
    assert codes == [401] * LIMIT + [429]
    assert client(served, "2001:db8:17:c::1").get(TYPES).status_code == 401


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("unknown", "unknown"),
    ],
)
def test_wrong_keys_are_counted_by_address_or_ipv6_block(address: str, counted: str) -> None:
    assert counted_as(address) == counted


def test_requests_without_a_key_are_not_counted_as_guesses(
    guarded: tuple[ServedApp, ServedApp],
) -> None:
    served, _ = guarded
    anonymous = Api(served.base)
    anonymous.http.headers["X-Forwarded-For"] = "203.0.113.40"
    assert {anonymous.get(TYPES).status_code for _ in range(LIMIT + 2)} == {401}


def test_a_wrong_key_is_logged_with_the_address_never_the_key(
    guarded: tuple[ServedApp, ServedApp], caplog: pytest.LogCaptureFixture
) -> None:
    served, _ = guarded
    key = "a-mistyped-but-secret-key-7f3a9c"
    with caplog.at_level(logging.WARNING, logger="jobline.api.auth"):
        assert client(served, "203.0.113.50", key).get(TYPES).status_code == 401
    [record] = [r for r in caplog.records if r.name == "jobline.api.auth"]
    assert record.client_address == "203.0.113.50"  # type: ignore[attr-defined]
    assert key not in repr(record.__dict__)
    assert key not in caplog.text
