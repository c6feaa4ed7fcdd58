"""`/metrics`: counters that move as jobs run, in the API and in the workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from jobline import jobs
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, Gunicorn, settings_env

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent), matching the given labels."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def scrape(url: str) -> str:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def worker_metrics(live_api: Api, worker_metrics_port: int) -> Callable[[], str]:
    """Scrapes the shared worker's metrics port."""
    return lambda: scrape(f"http://127.0.0.1:{worker_metrics_port}/metrics")


def test_api_metrics_count_submissions_requests_and_queue_depth(live_api: Api) -> None:
    before = scrape(live_api.url("/metrics"))
    live_api.submit_and_wait(CALCS, ADA)
    after = scrape(live_api.url("/metrics"))
    submitted = "jobline_jobs_submitted_total"
    assert sample(after, submitted, type="bmi") == sample(before, submitted, type="bmi") + 1
    posted = {"endpoint": CALCS, "method": "POST", "status": "202"}
    count = "jobline_http_request_duration_seconds_count"
    assert sample(after, count, **posted) == sample(before, count, **posted) + 1
    assert sample(after, count, endpoint="/api/v1/calculations/<string:pid>", method="GET") >= 1
    assert "jobline_queue_depth" in after and 'queue="default"' in after
    assert sample(after, "jobline_broker_up") == 1


def test_worker_metrics_count_outcomes_durations_and_queue_waits(
    live_api: Api, worker_metrics: Callable[[], str]
) -> None:
    before = worker_metrics()
    live_api.submit_and_wait(CALCS, ADA)

    def moved(name: str, **labels: str) -> Callable[[], bool]:
        return lambda: sample(worker_metrics(), name, **labels) > sample(before, name, **labels)

    wait_for(moved("jobline_jobs_succeeded_total", type="bmi"), "the success count")
    after = worker_metrics()
    duration = "jobline_job_duration_seconds_count"
    assert sample(after, duration, type="bmi", outcome="succeeded") > sample(
        before, duration, type="bmi", outcome="succeeded"
    )
    wait = "jobline_job_queue_wait_seconds_count"
    assert sample(after, wait, type="bmi", queue="default") > sample(
        before, wait, type="bmi", queue="default"
    )


def test_failures_retries_and_cancellations_are_counted_by_type(
    settings: Settings, store: JobStore, live_api: Api, worker_metrics: Callable[[], str]
) -> None:
    pipeline = Pipeline(settings, store, make_celery(settings), jobs.load(["tests.jobtypes"]))
    before, api_before = worker_metrics(), scrape(live_api.url("/metrics"))
    pipeline.submit("test_broken", {})
    pipeline.submit("test_flaky", {"failures": 1})
    wait_for(
        lambda: (
            sample(worker_metrics(), "jobline_jobs_failed_total", type="test_broken")
            > sample(before, "jobline_jobs_failed_total", type="test_broken")
        ),
        "the failure count",
    )
    wait_for(
        lambda: (
            sample(worker_metrics(), "jobline_jobs_succeeded_total", type="test_flaky")
            > sample(before, "jobline_jobs_succeeded_total", type="test_flaky")
        ),
        "the flaky job to succeed",
    )
    retried = "jobline_jobs_retried_total"
    assert sample(worker_metrics(), retried, type="test_flaky") > sample(
        before, retried, type="test_flaky"
    )
    job = live_api.post(CALCS, json={**ADA, "name": "to cancel"}).json()
    live_api.post(f"{CALCS}/{job['id']}/cancel")
    cancelled = sample(scrape(live_api.url("/metrics")), "jobline_jobs_cancelled_total", type="bmi")
    # The worker may have finished it first; a finished job is not counted as cancelled.
    status = live_api.get(f"{CALCS}/{job['id']}").json()["status"]
    expected = sample(api_before, "jobline_jobs_cancelled_total", type="bmi")
    assert cancelled == expected + (1 if status == "cancelled" else 0)


def test_gunicorn_workers_add_up_into_one_metrics_page(gunicorn_api: Gunicorn) -> None:
    def healthz_count() -> float:
        text = scrape(gunicorn_api.base + "/metrics")
        return sample(text, "jobline_http_request_duration_seconds_count", endpoint="/healthz")

    start = healthz_count()
    for _ in range(30):
        # A fresh connection each time, so both gunicorn workers get some.
        assert requests.get(gunicorn_api.base + "/healthz", timeout=5).status_code == 200
    counts = {healthz_count() for _ in range(6)}
    assert counts == {start + 30}, counts


def _types(text: str) -> dict[str, Any]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_the_metric_names_and_kinds_are_the_documented_ones(live_api: Api) -> None:
    live_api.submit_and_wait(CALCS, ADA)
    kinds = _types(scrape(live_api.url("/metrics")))
    assert kinds["jobline_jobs_submitted"] == "counter"
    assert kinds["jobline_http_request_duration_seconds"] == "histogram"
    assert kinds["jobline_queue_depth"] == "gauge"


def test_metrics_are_served_as_the_exposition_format_with_one_charset(
    gunicorn_api: Gunicorn, live_api: Api, worker_metrics_port: int
) -> None:
    exposition = "text/plain; version=0.0.4; charset=utf-8"
    for url in (
        gunicorn_api.base + "/metrics",  # the API as `jobline api` serves it
        live_api.url("/metrics"),
        f"http://127.0.0.1:{worker_metrics_port}/metrics",
    ):
        assert requests.get(url, timeout=10).headers["Content-Type"] == exposition, url


def test_jobline_api_opens_no_gunicorn_control_socket_in_home(
    settings: Settings, tmp_path: Path
) -> None:
    # gunicorn puts its control socket at one path under $HOME, which every API on
    # the machine would share, and each would unlink it for the others on stopping.
    env = settings_env(settings) | {"HOME": str(tmp_path)}
    env.pop("XDG_RUNTIME_DIR", None)
    port = local.free_port()
    argv = local.jobline_argv("api", f"--port={port}", "--workers=1")
    api = local.Process("api", argv, env=env, log=tmp_path / "api.log").start()
    try:
        local.wait_until(lambda: local.port_open(port), 60, "gunicorn", api)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        api.stop()
