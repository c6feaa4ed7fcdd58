"""Webhooks: a finished job POSTed to its callback_url, signed, retried, each attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme
from pydantic import BaseModel, ValidationError

from jobline import jobs
from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.engine.webhooks import (
    CallbackUrl,
    DeliveryFailed,
    WebhooksNotConfigured,
    deliver,
    sign,
    verify,
)
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.records import Job
from jobline.store.views import job_view
from tests.conftest import Api, ServedApp

ADA = {"name": "Ada", "weight": 55, "height": 170}
JOBS = "/api/v1/jobs"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP server taking webhooks; answers each POST with the next scripted status."""

    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    host: str = "127.0.0.1"
    # Sent with every answer (a redirect's target).
    location: str | None = None
    # Serve HTTPS with this context; the server names clients asked for (SNI) are kept.
    tls: ssl.SSLContext | None = None
    server_names: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(Received(dict(self.headers), body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        scheme = "http"
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{self.host}:{self.server.server_port}/hooks/jobline"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} webhooks"
            time.sleep(0.05)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def pipeline(settings: Settings, store: JobStore) -> Pipeline:
    return Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))


def secret(settings: Settings) -> str:
    assert settings.webhook_secret is not None
    return settings.webhook_secret.get_secret_value()


def wait_job(
    store: JobStore, job_id: str, until: Callable[[Job], bool], timeout: float = 30
) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if until(job):
            return job
        assert time.monotonic() < deadline, f"timed out; last seen {job}"
        time.sleep(0.05)


def delivered(job: Job) -> bool:
    return bool((job.get("webhook") or {}).get("delivered_at"))


def test_a_finished_job_is_posted_to_its_callback_url_signed_with_the_secret(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    job = pipeline.submit("bmi", ADA, extra={"callback_url": receiver.url})
    [hook] = receiver.wait_for(1)
    assert hook.headers["Content-Type"] == "application/json"
    signature = hook.headers["X-Jobline-Signature"]
    assert signature.startswith("sha256=")
    expected = hmac.new(secret(pipeline.settings).encode(), hook.body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert verify(secret(pipeline.settings), hook.body, signature)
    assert not verify("another-secret-of-some-length", hook.body, signature)
    sent = json.loads(hook.body)
    final = wait_job(store, job["_id"], delivered)
    assert sent == {k: v for k, v in job_view(final).items() if k != "webhook"}
    assert sent["status"] == "succeeded"
    assert sent["result"] == {"bmi": 19.03, "category": "normal"}
    view = job_view(final)["webhook"]
    assert view["attempts"] == 1
    assert view["last_status"] == 200
    assert view["last_error"] is None
    assert view["delivered_at"] >= sent["finished_at"]


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers_200(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    receiver.answers = [500, 503]
    job = pipeline.submit("bmi", ADA, extra={"callback_url": receiver.url})
    hooks = receiver.wait_for(3)
    assert len({h.body for h in hooks}) == 1, "every attempt sends the same body"
    assert all(
        verify(secret(pipeline.settings), h.body, h.headers["X-Jobline-Signature"]) for h in hooks
    )
    final = wait_job(store, job["_id"], delivered)
    assert final["webhook"]["attempts"] == 3
    assert final["webhook"]["last_status"] == 200
    assert final["webhook"]["last_error"] is None


def test_a_receiver_refusing_for_good_is_not_retried_and_the_refusal_is_recorded(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    receiver.answers = [410]
    job = pipeline.submit("bmi", ADA, extra={"callback_url": receiver.url})
    receiver.wait_for(1)
    final = wait_job(store, job["_id"], lambda j: bool(j.get("webhook")))
    assert final["webhook"]["attempts"] == 1
    assert final["webhook"]["last_status"] == 410
    assert final["webhook"]["last_error"] == "receiver answered 410"
    assert "delivered_at" not in final["webhook"]
    time.sleep(3)  # a retry would have come within a few seconds of backoff
    assert len(receiver.received) == 1


def test_failed_and_cancelled_jobs_are_posted_too(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    failed = pipeline.submit("test_broken", {}, extra={"callback_url": receiver.url})
    later = pipeline.submit("bmi", ADA, delay_seconds=3600, extra={"callback_url": receiver.url})
    pipeline.cancel(later["_id"])
    hooks = receiver.wait_for(2)
    by_id = {json.loads(h.body)["id"]: json.loads(h.body) for h in hooks}
    assert by_id[failed["_id"]]["status"] == "failed"
    assert by_id[failed["_id"]]["error"]["type"] == "ValueError"
    assert by_id[later["_id"]]["status"] == "cancelled"
    for job in (failed, later):
        assert wait_job(store, job["_id"], delivered)["webhook"]["attempts"] == 1


def test_a_job_killed_at_its_hard_time_limit_is_posted_as_failed(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    job = pipeline.submit("test_hang", {"seconds": 30}, extra={"callback_url": receiver.url})
    [hook] = receiver.wait_for(1, timeout=60)
    sent = json.loads(hook.body)
    assert sent["id"] == job["_id"]
    assert sent["status"] == "failed"
    assert sent["error"]["reason"] == "timeout"


def test_a_redirect_is_recorded_as_a_final_failure_and_never_followed(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    elsewhere = Receiver()
    try:
        receiver.answers = [307]
        receiver.location = elsewhere.url
        job = pipeline.submit("bmi", ADA, extra={"callback_url": receiver.url})
        receiver.wait_for(1)
        final = wait_job(store, job["_id"], lambda j: bool(j.get("webhook")))
        assert final["webhook"]["last_status"] == 307
        assert final["webhook"]["last_error"] == "receiver answered 307 (a redirect: not followed)"
        time.sleep(2)  # a retry would have come within a second or two of backoff
        assert len(receiver.received) == 1
        assert elsewhere.received == []
    finally:
        elsewhere.close()


def test_a_callback_by_name_is_sent_to_the_checked_address_keeping_the_name_as_host(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    url = receiver.url.replace("127.0.0.1", "localhost")
    job = pipeline.submit("bmi", ADA, extra={"callback_url": url})
    [hook] = receiver.wait_for(1)
    assert hook.headers["Host"] == f"localhost:{receiver.server.server_port}"
    assert wait_job(store, job["_id"], delivered)["webhook"]["last_status"] == 200


def tls_receiver(ca: trustme.CA, *names: str) -> Receiver:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return Receiver(tls=context)


def test_an_https_callback_by_name_is_pinned_with_the_name_in_sni_and_in_the_certificate_check(
    pipeline: Pipeline, store: JobStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    job = pipeline.submit("bmi", ADA, delay_seconds=3600)
    settings = pipeline.settings
    # A certificate for the name: the connection goes to 127.0.0.1, TLS speaks of localhost.
    named = tls_receiver(ca, "localhost")
    ip_only = tls_receiver(ca, "127.0.0.1")
    try:
        url = named.url.replace("127.0.0.1", "localhost")
        assert deliver(settings, store, job["_id"], url, "{}") == 200
        assert named.server_names == ["localhost"]
        assert named.received[0].headers["Host"] == f"localhost:{named.server.server_port}"
        # A certificate for the address alone does not pass: it is checked against the name.
        with pytest.raises(DeliveryFailed):
            deliver(
                settings, store, job["_id"], ip_only.url.replace("127.0.0.1", "localhost"), "{}"
            )
        assert ip_only.received == []
    finally:
        named.close()
        ip_only.close()
    assert store.get(job["_id"])["webhook"]["attempts"] == 2


def test_a_callback_off_limits_at_delivery_is_not_sent_and_recorded_as_a_final_failure(
    settings: Settings, store: JobStore, worker: local.Process
) -> None:
    # The API let 127.0.0.0/8 through; the worker allows 127.0.0.1 only, as if
    # the name had come to resolve elsewhere between submission and delivery.
    elsewhere = Receiver(host="127.0.0.2")
    try:
        lenient = Settings(**{**settings.model_dump(), "webhook_allowed_networks": "127.0.0.0/8"})
        p = Pipeline(lenient, store, make_celery(lenient), jobs.load(lenient.job_module_list))
        job = p.submit("bmi", ADA, extra={"callback_url": elsewhere.url})
        final = wait_job(store, job["_id"], lambda j: bool(j.get("webhook")))
        record = final["webhook"]
        assert record["attempts"] == 1
        assert record["last_status"] is None
        assert record["last_error"].startswith("not sent: the callback_url host '127.0.0.2'")
        assert "loopback" in record["last_error"]
        assert "delivered_at" not in record
        time.sleep(2)  # a retry would have come within a second or two of backoff
        assert store.get(job["_id"])["webhook"]["attempts"] == 1
        assert elsewhere.received == []
    finally:
        elsewhere.close()


def test_a_job_without_a_callback_url_sends_nothing(
    pipeline: Pipeline, store: JobStore, worker: local.Process, receiver: Receiver
) -> None:
    job = pipeline.submit("bmi", ADA)
    assert wait_job(store, job["_id"], lambda j: j["status"] == "succeeded").get("webhook") is None
    assert receiver.received == []


def test_a_callback_url_is_refused_when_no_webhook_secret_is_configured(
    settings: Settings, store: JobStore
) -> None:
    unsigned = Settings(**{**settings.model_dump(), "webhook_secret": None})
    p = Pipeline(unsigned, store, make_celery(unsigned), jobs.load(unsigned.job_module_list))
    with pytest.raises(WebhooksNotConfigured) as caught:
        p.submit("bmi", ADA, extra={"callback_url": "http://127.0.0.1:9/"})
    assert caught.value.status == 422
    assert caught.value.errors[0]["loc"] == ["callback_url"]


# -- over HTTP ------------------------------------------------------------------


def test_a_job_posted_with_a_callback_url_is_delivered_as_get_shows_it(
    live_api: Api, receiver: Receiver, settings: Settings
) -> None:
    response = live_api.post(
        JOBS, json={"type": "sleep", "params": {"seconds": 0.2}, "callback_url": receiver.url}
    )
    assert response.status_code == 202, response.text
    assert response.json()["callback_url"] == receiver.url
    assert response.json()["webhook"] is None
    [hook] = receiver.wait_for(1)
    assert verify(secret(settings), hook.body, hook.headers["X-Jobline-Signature"])
    location = response.headers["Location"]
    shown = live_api.wait_for(
        location, lambda j: bool(j["webhook"] and j["webhook"]["delivered_at"])
    )
    assert json.loads(hook.body) == {k: v for k, v in shown.items() if k != "webhook"}
    assert shown["webhook"]["attempts"] == 1
    assert shown["webhook"]["last_status"] == 200


@pytest.fixture(scope="module")
def unsigned_api(settings: Settings, store: JobStore) -> Iterator[Api]:
    """The API of a server with no JOBLINE_WEBHOOK_SECRET."""
    unsigned = Settings(**{**settings.model_dump(), "webhook_secret": None})
    served = ServedApp(create_app(unsigned))
    yield Api(served.base)
    served.close()


def test_a_callback_url_is_a_422_over_http_when_the_server_has_no_secret(
    unsigned_api: Api, store: JobStore
) -> None:
    body = {"type": "noop", "callback_url": "http://127.0.0.1:9/hook"}
    response = unsigned_api.post(JOBS, json=body)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["callback_url"]
    assert "JOBLINE_WEBHOOK_SECRET" in response.json()["detail"]
    batch = unsigned_api.post(f"{JOBS}:batch", json={"jobs": [body, {"type": "noop"}]}).json()
    assert [r["status"] for r in batch["results"]] == [422, 202]


class Hook(BaseModel):
    callback_url: CallbackUrl


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://",
        "https:///path-without-host",
        "not a url",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\nX-Injected: 1",
        "https://example.com/" + "a" * 2000,
        "",
    ],
)
def test_a_callback_url_must_be_a_sane_http_or_https_url(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Hook(callback_url=url)
    assert caught.value.errors()[0]["loc"] == ("callback_url",)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://hooks.example.com/jobline?team=bio"]
)
def test_http_and_https_callback_urls_are_accepted_as_given(url: str) -> None:
    assert Hook(callback_url=url).callback_url == url


def test_the_signature_is_hmac_sha256_of_the_raw_body_in_hex() -> None:
    # RFC 4231 test case 2.
    assert (
        sign("Jefe", b"what do ya want for nothing?")
        == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
