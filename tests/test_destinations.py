"""Where webhooks may go: off-limits hosts refused at submission, allowed networks let through.

Every job submitted here is delayed an hour on an API no worker consumes, so
that a wrong acceptance could never turn into a delivery; and names other than
localhost never resolve in the tests (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.engine.destinations import ForbiddenDestination, check, off_limits, pinned
from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp, idle_settings

JOBS = "/api/v1/jobs"
LATER = 3600  # seconds: no job accepted here is ever due


def closed_api(settings: Settings, allowed: str) -> Iterator[Api]:
    served = ServedApp(create_app(idle_settings(settings, webhook_allowed_networks=allowed)))
    yield Api(served.base)
    served.close()


@pytest.fixture(scope="module")
def strict_api(settings: Settings) -> Iterator[Api]:
    """An API allowing no private network, with no worker behind it."""
    yield from closed_api(settings, "")


@pytest.fixture(scope="module")
def private_net_api(settings: Settings) -> Iterator[Api]:
    """An API allowing receivers on 10.1.0.0/16 and on 127.0.0.1 only."""
    yield from closed_api(settings, "10.1.0.0/16, 127.0.0.1/32")


def hook(url: str) -> dict[str, object]:
    return {"type": "noop", "delay_seconds": LATER, "callback_url": url}


OFF_LIMITS = [
    ("loopback", "http://127.0.0.1:8080/hook", "loopback"),
    ("loopback elsewhere in 127/8", "http://127.9.9.9/hook", "loopback"),
    ("loopback spelled short", "http://127.1/hook", "loopback"),
    ("loopback as one number", "http://2130706433/hook", "loopback"),
    ("localhost, by name", "http://localhost:9/hook", "resolves to 127.0.0.1, a loopback"),
    ("private 10/8", "http://10.0.0.5/hook", "private"),
    ("private 172.16/12", "https://172.16.3.4/hook", "private"),
    ("private 192.168/16", "http://192.168.1.1/", "private"),
    ("cloud metadata", "http://169.254.169.254/latest/meta-data/", "link-local"),
    ("unspecified", "http://0.0.0.0:5000/", "unspecified"),
    ("multicast", "http://224.0.0.1/", "multicast"),
    ("reserved 240/4", "http://240.0.0.1/", "reserved"),
    ("broadcast", "http://255.255.255.255/", "reserved"),
    ("shared address space", "http://100.64.0.1/", "non-public"),
    ("documentation range", "http://192.0.2.10/", "private"),
    ("IPv6 loopback", "http://[::1]:8080/hook", "loopback"),
    ("IPv6 unspecified", "http://[::]/", "unspecified"),
    ("IPv6 link-local", "http://[fe80::1]/", "link-local"),
    ("IPv6 unique local", "http://[fd12:3456::1]/", "private"),
    ("IPv6 multicast", "http://[ff02::1]/", "multicast"),
    ("IPv4-mapped loopback", "http://[::ffff:127.0.0.1]/", "loopback IPv4 (127.0.0.1)"),
    ("IPv4-mapped metadata", "http://[::ffff:169.254.169.254]/", "link-local IPv4"),
    ("6to4 of loopback", "http://[2002:7f00:1::]/", "loopback IPv4 (127.0.0.1)"),
    ("NAT64 of a private address", "http://[64:ff9b::a00:5]/", "private IPv4 (10.0.0.5)"),
]


@pytest.mark.parametrize(
    ("url", "said"), [pytest.param(u, s, id=name) for name, u, s in OFF_LIMITS]
)
def test_a_callback_url_reaching_an_off_limits_address_is_a_422_naming_callback_url(
    strict_api: Api, store: JobStore, url: str, said: str
) -> None:
    store.jobs.delete_many({})
    response = strict_api.post(JOBS, json=hook(url))
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["loc"] == ["callback_url"]
    assert said in error["msg"]
    assert "JOBLINE_WEBHOOK_ALLOWED_NETWORKS" in error["msg"]
    assert store.jobs.count_documents({}) == 0


def test_a_name_that_does_not_resolve_is_refused_at_submission(strict_api: Api) -> None:
    # The tests resolve no name but localhost; a name nobody can check is refused.
    response = strict_api.post(JOBS, json=hook("http://hooks.internal.test/x"))
    assert response.status_code == 422
    assert "does not resolve" in response.json()["errors"][0]["msg"]


def test_a_batch_refuses_only_the_job_whose_callback_is_off_limits(strict_api: Api) -> None:
    jobs = [hook("http://10.0.0.5/"), {"type": "noop", "delay_seconds": LATER}]
    results = strict_api.post(f"{JOBS}:batch", json={"jobs": jobs}).json()["results"]
    assert [r["status"] for r in results] == [422, 202]
    assert results[0]["errors"][0]["loc"] == ["callback_url"]


@pytest.mark.parametrize(
    "url",
    ["http://93.184.215.14/hook", "https://[2606:4700::1111]:8443/hook?team=bio"],
)
def test_a_callback_url_on_a_public_address_is_accepted(strict_api: Api, url: str) -> None:
    response = strict_api.post(JOBS, json=hook(url))
    assert response.status_code == 202, response.text
    assert response.json()["callback_url"] == url
    assert response.json()["status"] == "scheduled"


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:8080/hook", "http://[::ffff:10.1.0.9]/", "http://localhost:9/h"]
)
def test_the_allowed_networks_let_receivers_on_them_through(private_net_api: Api, url: str) -> None:
    response = private_net_api.post(JOBS, json=hook(url))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("url", ["http://10.2.0.1/", "http://127.0.0.2/", "http://[::1]/"])
def test_the_allowed_networks_allow_nothing_beyond_themselves(
    private_net_api: Api, url: str
) -> None:
    assert private_net_api.post(JOBS, json=hook(url)).status_code == 422


def test_a_schedule_with_an_off_limits_callback_is_a_422(strict_api: Api) -> None:
    body = {"type": "noop", "interval_seconds": LATER, "callback_url": "http://10.0.0.5/"}
    response = strict_api.post("/api/v1/schedules", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["callback_url"]


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network", "10.0.0.0/8,,fe80::/200"])
def test_allowed_networks_that_are_not_cidrs_are_refused_at_start(
    settings: Settings, value: str
) -> None:
    with pytest.raises(ValueError, match="not a CIDR network"):
        Settings(**{**settings.model_dump(), "webhook_allowed_networks": value})


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("2002:808:808::1", None),
        ("127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private IPv4 (10.0.0.1)"),
        ("64:ff9b::7f00:1", "loopback IPv4 (127.0.0.1)"),
        ("::7f00:1", "reserved"),
    ],
)
def test_an_address_is_off_limits_unless_public(address: str, kind: str | None) -> None:
    assert off_limits(ip_address(address)) == kind


def test_a_delivery_is_pinned_to_the_checked_address_keeping_the_name_for_host_and_tls() -> None:
    target, host, extensions = pinned("https://hooks.example.com:8443/a?b=1", ip_address("::1"))
    assert str(target) == "https://[::1]:8443/a?b=1"
    assert host == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    target, host, extensions = pinned("http://localhost/x", ip_address("127.0.0.1"))
    assert str(target) == "http://127.0.0.1/x"
    assert host == {"Host": "localhost"}
    assert extensions == {}


def test_checking_a_url_refuses_with_forbidden_destination() -> None:
    with pytest.raises(ForbiddenDestination):
        check("http://localhost:8080/hook", ())
