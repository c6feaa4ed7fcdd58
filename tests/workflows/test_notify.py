"""What a finished workflow tells the world: its signed webhook, and the metrics counting it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from jobline.core.settings import Settings
from jobline.engine import webhooks
from jobline.store.workflows import WorkflowStore
from tests.conftest import Api
from tests.support import wait_until
from tests.test_metrics import scrape
from tests.test_webhooks import Receiver
from tests.workflows.support import WORKFLOWS, submit, wait_ended

CHAIN = [
    {"id": "hello", "type": "test_greet", "params": {"name": "ada"}},
    {"id": "bad", "type": "test_broken", "needs": ["hello"]},
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_finished_workflow_is_posted_to_its_callback_signed_as_jobs_webhooks_are(
    wf_api: Api, settings: Settings, receiver: Receiver
) -> None:
    flow = submit(wf_api, CHAIN, callback_url=receiver.url)
    ended = wait_ended(wf_api, flow["id"])
    (hook,) = receiver.wait_for(1)
    assert settings.webhook_secret is not None
    key = settings.webhook_secret.get_secret_value()
    assert webhooks.verify(key, hook.body, hook.headers[webhooks.SIGNATURE_HEADER])
    body = json.loads(hook.body)
    assert (body["id"], body["status"]) == (flow["id"], "failed")
    assert body["error"]["step"] == "bad" and body["finished_at"] == ended["finished_at"]
    recorded = wf_api.wait_for(
        f"{WORKFLOWS}/{flow['id']}", lambda w: (w["webhook"] or {}).get("delivered_at"), 20
    )
    assert recorded["webhook"]["attempts"] == 1 and recorded["webhook"]["last_status"] == 200


def test_a_callback_without_a_signing_secret_is_refused_before_anything_is_stored(
    settings: Settings, flows: WorkflowStore
) -> None:
    from jobline.api import create_app
    from tests.conftest import ServedApp, idle_settings

    served = ServedApp(create_app(idle_settings(settings, webhook_secret=None)))
    try:
        refused = Api(served.base).post(
            WORKFLOWS, json={"steps": CHAIN, "callback_url": "http://127.0.0.1:9/hook"}
        )
    finally:
        served.close()
    assert refused.status_code == 422
    assert ["callback_url"] in [e["loc"] for e in refused.json()["errors"]]
    assert flows.workflows.count_documents({}) == 0


def counter(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        rf"^{name}(?:\{{{re.escape(wanted)}\}})? ([0-9.e+]+)$" if labels else rf"^{name} (\S+)$"
    )
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_workflows_are_counted_when_submitted_and_by_outcome_when_they_end(
    wf_api: Api, worker_metrics_port: int
) -> None:
    worker = f"http://127.0.0.1:{worker_metrics_port}/metrics"
    submitted = counter(scrape(wf_api.url("/metrics")), "jobline_workflows_submitted_total")
    failed = counter(scrape(worker), "jobline_workflows_finished_total", outcome="failed")
    wait_ended(wf_api, submit(wf_api, CHAIN)["id"])
    after = counter(scrape(wf_api.url("/metrics")), "jobline_workflows_submitted_total")
    assert after == submitted + 1
    # The worker counts a workflow just after writing its end, which the API may show first.
    wait_until(
        lambda: (
            counter(scrape(worker), "jobline_workflows_finished_total", outcome="failed") > failed
        ),
        15,
        "the worker to count the workflow",
    )
    ended = counter(scrape(worker), "jobline_workflows_finished_total", outcome="failed")
    assert ended == failed + 1
