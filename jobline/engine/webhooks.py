"""Webhooks: when a job with a ``callback_url`` ends, POST it there, signed.

The body is the job exactly as ``GET /api/v1/jobs/<id>`` shows it, rendered
once when the job ends; every attempt sends the same bytes, signed with
HMAC-SHA256 under ``JOBLINE_WEBHOOK_SECRET`` as ``X-Jobline-Signature:
sha256=<hex>``. Delivery is a Celery task retried with exponential backoff, so
it is at least once: a receiver should treat a repeat of the same job id and
``finished_at`` as one event. Each attempt is counted on the job's ``webhook``
field. Where a webhook may go is :mod:`jobline.engine.destinations`' rule,
applied at submission and again at each delivery; redirects are never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

import httpx
from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from pydantic import AfterValidator, StringConstraints

from jobline.core.errors import JoblineError
from jobline.core.settings import Settings
from jobline.engine import destinations
from jobline.engine.queue import DEFAULT_QUEUE
from jobline.store.jobs import JobStore
from jobline.store.records import Job, Status
from jobline.store.views import job_view

log = logging.getLogger(__name__)

DELIVER_TASK = "jobline.deliver_webhook"
WORKFLOW_DELIVER_TASK = "jobline.deliver_workflow_webhook"
SIGNATURE_HEADER = "X-Jobline-Signature"
MAX_URL_LENGTH = 2000
# Answers that may go away on their own; any other 4xx is the receiver refusing for good.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("the URL contains whitespace or control characters")
    return value


# An http(s) URL jobline POSTs the finished job to.
CallbackUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_URL_LENGTH),
    AfterValidator(_http_url),
]


class WebhooksNotConfigured(JoblineError):
    """A callback_url was given but this server has no secret to sign webhooks with."""

    status = 422
    title = "Webhooks not configured"

    def __init__(self) -> None:
        msg = "set JOBLINE_WEBHOOK_SECRET on the server to use callback_url"
        super().__init__(f"this server does not send webhooks: {msg}")
        self.errors = [{"loc": ["callback_url"], "msg": msg, "type": "webhooks_not_configured"}]


class Deliveries(Protocol):
    """Where delivery attempts are recorded: the job's record, or the workflow's."""

    def record_webhook(
        self, id: str, /, *, last_status: int | None, last_error: str | None, delivered: bool
    ) -> None: ...


class DeliveryFailed(Exception):
    """The receiver did not take the webhook, in a way worth trying again."""


def require_secret(settings: Settings) -> None:
    """Refuse a callback_url when webhooks cannot be signed."""
    if settings.webhook_secret is None:
        raise WebhooksNotConfigured()


def check_callback(settings: Settings, url: str) -> None:
    """Refuse a callback_url that cannot be signed or whose host webhooks may not reach."""
    require_secret(settings)
    destinations.check_recent(url, settings.webhook_networks)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Jobline-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: compare the signature in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def render(job: Job) -> str:
    """The webhook body: the job as the API shows it, without its delivery record."""
    view = job_view(job)
    view.pop("webhook", None)
    return json.dumps(view, separators=(",", ":"))


def notify(app: Celery, job: Job) -> bool:
    """Queue the webhook of a finished job that asked for one; False if none was sent."""
    url = job.get("callback_url")
    if not url or not Status(job["status"]).finished:
        return False
    try:
        app.send_task(DELIVER_TASK, args=[job["_id"], url, render(job)], queue=DEFAULT_QUEUE)
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        log.warning("could not queue the webhook of job %s: %s", job["_id"], exc)
        return False
    return True


def notify_workflow(app: Celery, view: dict[str, Any]) -> bool:
    """Queue the webhook of a finished workflow: its body is the workflow as GET shows it."""
    view = {k: v for k, v in view.items() if k != "webhook"}
    body = json.dumps(view, separators=(",", ":"))
    try:
        app.send_task(
            WORKFLOW_DELIVER_TASK,
            args=[view["id"], view["callback_url"], body],
            queue=DEFAULT_QUEUE,
        )
    except (OperationalError, KombuError, ConnectionError, OSError) as exc:
        log.warning("could not queue the webhook of workflow %s: %s", view["id"], exc)
        return False
    return True


def after_run(app: Celery, store: JobStore, job_id: str, status: str) -> None:
    """After a worker's run reached ``status``: send the webhook if the store agrees it ended so."""
    if status not in (Status.SUCCEEDED, Status.FAILED):
        return  # cancelled jobs are notified by whoever cancelled them
    try:
        job = store.get(job_id)
    except JoblineError:
        return
    if job["status"] == status:
        notify(app, job)


def deliver(settings: Settings, store: Deliveries, job_id: str, url: str, body: str) -> int | None:
    """POST one attempt and record it; the answer's status, or DeliveryFailed to retry.

    None when the URL's host now resolves where webhooks may not go: recorded
    as a final failure, nothing sent.
    """
    if settings.webhook_secret is None:
        store.record_webhook(
            job_id, last_status=None, last_error="no JOBLINE_WEBHOOK_SECRET", delivered=False
        )
        raise DeliveryFailed("no JOBLINE_WEBHOOK_SECRET on this worker")
    try:
        destination = destinations.check(url, settings.webhook_networks)
    except destinations.Unresolvable as exc:  # DNS may be back on the next try
        store.record_webhook(job_id, last_status=None, last_error=str(exc), delivered=False)
        raise DeliveryFailed(str(exc)) from None
    except destinations.ForbiddenDestination as exc:
        log.warning("webhook of job %s not sent: %s", job_id, exc)
        error = f"not sent: {exc}"
        store.record_webhook(job_id, last_status=None, last_error=error, delivered=False)
        return None
    raw = body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "jobline-webhook/1",
        SIGNATURE_HEADER: sign(settings.webhook_secret.get_secret_value(), raw),
    }
    try:
        answer = _post(destination, raw, headers, settings.webhook_timeout_seconds)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: could not reach the receiver"
        store.record_webhook(job_id, last_status=None, last_error=error, delivered=False)
        raise DeliveryFailed(error) from None
    code = answer.status_code
    if 200 <= code < 300:
        store.record_webhook(job_id, last_status=code, last_error=None, delivered=True)
        return code
    error = f"receiver answered {code}"
    if 300 <= code < 400:
        error += " (a redirect: not followed)"
    store.record_webhook(job_id, last_status=code, last_error=error, delivered=False)
    if 300 <= code < 500 and code not in RETRYABLE_4XX:
        log.warning("webhook of job %s refused with %s; not retried", job_id, code)
        return code
    raise DeliveryFailed(error)


def _post(
    destination: destinations.Destination, raw: bytes, headers: dict[str, str], timeout: float
) -> httpx.Response:
    """POST to the checked addresses in turn, until one takes the connection."""
    # No proxy from the environment (the connection must go to the address
    # checked), but the transport still honours SSL_CERT_FILE / SSL_CERT_DIR.
    transport = httpx.HTTPTransport(trust_env=True)
    with httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        for i, ip in enumerate(destination.addresses):
            target, host, extensions = destinations.pinned(destination.url, ip)
            try:
                return client.post(
                    target, content=raw, headers={**headers, **host}, extensions=extensions
                )
            except httpx.ConnectError:
                if i == len(destination.addresses) - 1:
                    raise
    raise httpx.ConnectError("the callback_url host resolved to no address")
