"""Structured logs: one JSON object a line with the job's fields, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from celery.app import trace

from jobline.core.logs import Redact, scrub
from jobline.core.settings import Settings
from jobline.engine import queue
from jobline.engine.queue import RUN_TASK
from jobline.engine.tasks import CELERY_TASK_LINES, JobTaskLines
from jobline.engine.webhooks import DELIVER_TASK
from jobline.local import servers as local
from tests.conftest import Api, Gunicorn, idle_settings, start_worker
from tests.support import make_pipeline, wait_until

KEY = "jl_" + "k" * 43


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {KEY}", KEY),
        ("headers={'Authorization': 'Bearer abc.def-ghi'}", "abc.def-ghi"),
        ("Authorization: Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg=="),
        ("AUTHORIZATION=opaque-token-1", "opaque-token-1"),
        ("BEARER abc.def-ghi", "abc.def-ghi"),
        ("mongodb+srv://user:hunter2@cluster0.example.net/?w=majority", "hunter2"),
        ("redis://:s3cret@redis.internal:6379/0", "s3cret"),
        (f"key={KEY[:20]}", KEY[3:20]),
    ],
)
def test_secrets_are_scrubbed_from_log_text(text: str, secret: str) -> None:
    assert secret not in scrub(text)


def test_a_log_record_is_one_json_line_with_its_fields_and_no_key() -> None:
    from pythonjsonlogger.json import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("{levelname}{name}{message}", style="{"))
    handler.addFilter(Redact())
    logger = logging.getLogger("jobline.test_logs")
    logger.addHandler(handler)
    try:
        fields = {"job_id": "j1", "type": "bmi", "attempt": 2, "owner": "alice", "duration": 0.5}
        logger.warning("presented %s", f"Bearer {KEY}", extra={**fields, "header": KEY})
        try:
            raise RuntimeError(f"refused Authorization: Bearer {KEY}")
        except RuntimeError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and KEY not in out.getvalue()
    record = json.loads(lines[0])
    assert {k: record[k] for k in fields} == fields
    assert "RuntimeError" in json.loads(lines[1])["exc_info"]


def _json_lines(path: Path, *, only_json: bool = False) -> list[dict[str, Any]]:
    """The log's records; ``only_json`` skips what is not a record (Celery's start banner)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines if not only_json or line.startswith("{")]


def test_api_and_worker_logs_are_json_with_job_fields_and_never_the_key(
    gunicorn_api: Gunicorn, api_keys: dict[str, str], worker: local.Process, worker_log: Path
) -> None:
    base, key = gunicorn_api.base, api_keys["alice"]
    auth = {"Authorization": f"Bearer {key}"}
    posted = requests.post(
        base + "/api/v1/calculations",
        json={"name": "Ada", "weight": 55, "height": 170},
        headers=auth,
        timeout=10,
    )
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["id"]
    wrong = {"Authorization": f"Bearer {key[:-4]}abcd"}
    assert requests.get(base + "/api/v1/calculations", headers=wrong, timeout=5).status_code == 401
    assert requests.get(f"{base}/api/v1/calculations?x={key}", timeout=5).status_code == 401

    deadline = time.monotonic() + 30
    while not any(
        r.get("job_id") == job_id and r.get("status") == "succeeded"
        for r in _json_lines(worker_log, only_json=True)
    ):
        assert time.monotonic() < deadline, "the worker never logged the job's end"
        time.sleep(0.2)

    api_records = _json_lines(gunicorn_api.log)  # every line parses as JSON
    assert key not in gunicorn_api.log.read_text()
    assert key[:-4] not in gunicorn_api.log.read_text()
    submitted = next(r for r in api_records if r["message"] == "job submitted")
    assert submitted["job_id"] == job_id
    assert submitted["owner"] == "alice" and submitted["type"] == "bmi"
    request_line = next(r for r in api_records if r.get("status") == 202)
    assert request_line["owner"] == "alice" and request_line["duration"] >= 0

    ended = next(
        r
        for r in _json_lines(worker_log, only_json=True)
        if r.get("job_id") == job_id and "duration" in r
    )
    assert ended["type"] == "bmi" and ended["owner"] == "alice" and ended["attempt"] == 1
    assert key not in worker_log.read_text()
    # At INFO a job's start and end are its own two lines; Celery's line for
    # each of its task's deliveries received and succeeded, which said it again, is left out.
    worker_records = _json_lines(worker_log, only_json=True)
    assert any(r.get("job_id") == job_id and r["message"] == "job started" for r in worker_records)
    celerys = [r["message"] for r in worker_records if r["logger"] in CELERY_TASK_LINES]
    assert not [m for m in celerys if RUN_TASK in m and ("received" in m or "succeeded in" in m)]


def test_a_delivery_that_runs_nothing_is_in_the_workers_own_log(
    live_api: Api, settings: Settings, worker_log: Path
) -> None:
    job = live_api.submit_and_wait("/api/v1/jobs", {"type": "noop", "params": {}})
    assert job["status"] == "succeeded"
    # A second delivery of a finished job: Celery's line for it is left out, the worker's stays.
    p = make_pipeline(settings)
    queue.publish(p.celery, p.store.get(job["id"]), p.catalogue.get("noop"))
    wait_until(
        lambda: any(
            r.get("job_id") == job["id"] and r["message"] == "job delivery skipped: succeeded"
            for r in _json_lines(worker_log, only_json=True)
        ),
        20,
        "the worker's line for the skipped delivery",
    )


def test_celerys_lines_for_a_jobs_task_are_left_out_and_its_other_tasks_lines_stay() -> None:
    ours = JobTaskLines()
    trace_log = logging.getLogger(CELERY_TASK_LINES[1])

    def record(fmt: str, name: str) -> logging.LogRecord:
        data = {"id": "t1", "name": name, "return_value": "'x'", "runtime": 0.1}
        return trace_log.makeRecord(
            trace_log.name, logging.INFO, __file__, 1, fmt, (data,), None, extra={"data": data}
        )

    assert not ours.filter(record(trace.LOG_RECEIVED, RUN_TASK))
    assert not ours.filter(record(trace.LOG_SUCCESS, RUN_TASK))
    assert ours.filter(record(trace.LOG_RETRY, RUN_TASK))  # jobline says nothing of it
    assert ours.filter(record(trace.LOG_SUCCESS, DELIVER_TASK))


def test_a_worker_logs_at_the_level_it_is_started_with(
    settings: Settings, idle_api: Api, tmp_path: Path
) -> None:
    log = tmp_path / "quiet-worker.log"
    quiet = start_worker(idle_settings(settings), log, "--loglevel=WARNING", "--hostname=quiet@%h")
    try:
        job = idle_api.submit_and_wait("/api/v1/jobs", {"type": "noop", "params": {}})
        assert job["status"] == "succeeded"
    finally:
        quiet.stop()
    records = _json_lines(log, only_json=True)
    assert not [r for r in records if r["level"] in ("DEBUG", "INFO")], records[:3]
