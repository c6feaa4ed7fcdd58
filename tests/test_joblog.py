"""Job logs: what a job writes (logging, print, its programs), stored per attempt, paged, capped."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from jobline.core.settings import Settings
from jobline.engine import joblog, retention
from jobline.engine.joblog import LINE_OVERHEAD
from jobline.engine.pipeline import Pipeline
from jobline.store.jobs import JobStore
from jobline.store.logs import LogStore
from jobline.store.records import new_job, now
from tests.conftest import Api
from tests.support import wait_until
from tests.test_events import release


def logs_of(api: Api, job_id: str, **query: object) -> dict:
    response = api.get(f"/api/v1/jobs/{job_id}/logs", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def run(api: Api, type: str, params: dict, timeout: float = 30) -> dict:
    return api.submit_and_wait("/api/v1/jobs", {"type": type, "params": params}, timeout)


def test_what_a_job_logs_and_prints_is_stored_in_order_with_secrets_scrubbed(
    live_api: Api,
) -> None:
    job = run(live_api, "test_chatty", {"lines": 3, "secret": "jl_abcdefghijklmnop"})
    assert job["status"] == "succeeded"
    page = logs_of(live_api, job["id"])
    lines = [(i["level"], i["stream"], i["message"]) for i in page["items"]]
    assert lines == [
        ("INFO", "log", "attempt 1 starts; token jl_[redacted]"),
        ("INFO", "stdout", "line 0"),
        ("INFO", "stdout", "line 1"),
        ("INFO", "stdout", "line 2"),
        ("WARNING", "stderr", "to stderr"),
        ("WARNING", "log", "done"),
    ]
    assert {i["attempt"] for i in page["items"]} == {1}
    assert all(i["time"].endswith("Z") for i in page["items"])
    assert page["truncated"] is False
    assert page["next_cursor"] is None


def test_what_a_jobs_programs_write_to_stdout_and_stderr_is_its_log_in_order(
    live_api: Api, worker_log: Path
) -> None:
    job = run(live_api, "test_programs", {"tag": "p1"})
    assert job["status"] == "succeeded", job
    items = logs_of(live_api, job["id"])["items"]
    stdout = [i["message"] for i in items if i["stream"] == "stdout"]
    assert stdout == [
        "python p1", "child out", "raw p1", "given sys.stdout", "after p1", "tail p1"
    ]  # fmt: skip
    assert [(i["level"], i["message"]) for i in items if i["stream"] == "stderr"] == [
        ("WARNING", "child err")
    ]
    # The worker's own records written during the job stay in the worker's log.
    assert not [i for i in items if "worker's own" in i["message"]]
    in_log(worker_log, "the worker's own line p1")


def test_a_program_the_job_left_running_writes_to_the_workers_log_not_a_jobs(
    live_api: Api, worker_log: Path
) -> None:
    job = run(live_api, "test_programs", {"tag": "p2", "leave_running": True})
    assert job["status"] == "succeeded", job
    in_log(worker_log, "left behind p2")
    later = run(live_api, "test_programs", {"tag": "p3"})
    for done in (job, later):
        assert not [i for i in logs_of(live_api, done["id"])["items"] if "left" in i["message"]]


def test_a_stream_handler_made_in_one_job_writes_a_later_jobs_lines_into_that_jobs_log(
    live_api: Api,
) -> None:
    # Two runs in each of the worker's two pool processes: both make the handler once.
    jobs = [run(live_api, "test_keeps_a_handler", {"tag": f"k{n}"}) for n in range(4)]
    for n, job in enumerate(jobs):
        assert job["status"] == "succeeded", job
        messages = [i["message"] for i in logs_of(live_api, job["id"])["items"]]
        assert messages == [f"kept k{n}"], (n, messages)


def in_log(path: Path, text: str) -> None:
    wait_until(lambda: text in path.read_text(errors="replace"), 10, f"{text!r} in {path.name}")


def test_each_attempt_keeps_its_lines_and_attempt_selects_one(live_api: Api) -> None:
    job = run(live_api, "test_chatty", {"lines": 1, "fail_first": True})
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    everything = logs_of(live_api, job["id"])["items"]
    assert [i["attempt"] for i in everything] == [1, 1, 1, 2, 2, 2, 2]
    first = logs_of(live_api, job["id"], attempt=1)["items"]
    assert [i["message"] for i in first] == ["attempt 1 starts; token ", "line 0", "to stderr"]
    second = logs_of(live_api, job["id"], attempt=2)["items"]
    assert second[-1]["message"] == "done" and {i["attempt"] for i in second} == {2}


def test_cursor_pages_walk_the_whole_log_once_in_order(live_api: Api) -> None:
    job = run(live_api, "test_chatty", {"lines": 20})
    whole = logs_of(live_api, job["id"])["items"]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = logs_of(live_api, job["id"], **query)
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole and len(whole) == 23
    assert pages == 4


def test_a_job_printing_a_hundred_thousand_lines_finishes_within_the_cap(
    live_api: Api, settings: Settings
) -> None:
    job = run(live_api, "test_chatty", {"lines": 100_000}, timeout=90)
    assert job["status"] == "succeeded"
    page = logs_of(live_api, job["id"], limit=1000)
    lines = page["items"]
    while page["next_cursor"]:
        page = logs_of(live_api, job["id"], limit=1000, cursor=page["next_cursor"])
        lines += page["items"]
    assert page["truncated"] is True
    stored = sum(len(i["message"].encode()) + LINE_OVERHEAD for i in lines[:-1])
    assert stored <= settings.job_log_max_bytes
    marker = lines[-1]
    assert marker["stream"] == "jobline"
    dropped = int(marker["message"].split()[0])
    # Every line is either stored or counted: the first log line, 100,000 prints,
    # stderr and "done".
    assert dropped + len(lines) - 1 == 100_003
    # The worker is still answering at once.
    assert run(live_api, "noop", {}, timeout=10)["status"] == "succeeded"


def test_the_cap_holds_for_the_whole_job_across_its_attempts(
    live_api: Api, settings: Settings
) -> None:
    job = run(live_api, "test_chatty", {"lines": 2000, "fail_first": True}, timeout=60)
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    first = logs_of(live_api, job["id"], attempt=1, limit=1000)["items"]
    second = logs_of(live_api, job["id"], attempt=2, limit=1000)["items"]
    kept = [i for i in first + second if i["stream"] != "jobline"]
    assert (
        sum(len(i["message"].encode()) + LINE_OVERHEAD for i in kept) <= settings.job_log_max_bytes
    )
    # The first attempt used the whole cap: the second keeps only its marker line.
    assert [i["stream"] for i in second] == ["jobline"]
    assert second[0]["message"].startswith("2003 more lines dropped")


def test_the_job_event_stream_carries_log_events_as_lines_are_stored(
    live_api: Api, settings: Settings, idle_pipeline: Pipeline
) -> None:
    # Log events are not replayed: the job is let run only once its stream is open.
    job = idle_pipeline.submit("sleep", {"seconds": 1.2, "steps": 3})
    job_id, released = job["_id"], False
    messages: list[str] = []
    with requests.get(live_api.url(f"/api/v1/jobs/{job_id}/events"), stream=True, timeout=20) as s:
        event = None
        for raw in s.iter_lines(decode_unicode=True):
            if raw.startswith("event: "):
                event = raw[7:]
                if event == "job" and not released:
                    release(settings, idle_pipeline, job)
                    released = True
            elif raw.startswith("data: ") and event == "log":
                messages += [line["message"] for line in json.loads(raw[6:])["items"]]
            elif raw.startswith("data: ") and json.loads(raw[6:]).get("status") == "succeeded":
                break
    assert messages == ["step 1 of 3 done", "step 2 of 3 done", "step 3 of 3 done"]


def test_a_job_that_logs_nothing_writes_nothing_to_the_log_collections(
    live_api: Api, store: JobStore
) -> None:
    job = run(live_api, "noop", {})
    assert store.db["job_logs"].count_documents({"job": job["id"]}) == 0
    assert store.db["job_log_attempts"].count_documents({"job": job["id"]}) == 0
    assert logs_of(live_api, job["id"]) == {"items": [], "truncated": False, "next_cursor": None}


def test_an_unfinished_jobs_log_always_gives_a_cursor_to_follow(idle_api: Api) -> None:
    job_id = idle_api.post("/api/v1/jobs", json={"type": "noop", "params": {}}).json()["id"]
    page = logs_of(idle_api, job_id)
    assert page["items"] == [] and page["next_cursor"]
    again = logs_of(idle_api, job_id, cursor=page["next_cursor"])
    assert again["items"] == [] and again["next_cursor"] == page["next_cursor"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"limit": 0}, 422),
        ({"limit": 1001}, 422),
        ({"attempt": 0}, 422),
        ({"attempt": "one"}, 422),
        ({"colour": "red"}, 422),
    ],
)
def test_bad_log_queries_get_a_problem_document(idle_api: Api, query: dict, status: int) -> None:
    job_id = idle_api.post("/api/v1/jobs", json={"type": "noop", "params": {}}).json()["id"]
    response = idle_api.get(f"/api/v1/jobs/{job_id}/logs", params=query)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("job_id", ["nope", "0193a0d4-0000-7000-8000-000000000000"])
def test_the_log_of_an_unknown_job_is_404(idle_api: Api, job_id: str) -> None:
    assert idle_api.get(f"/api/v1/jobs/{job_id}/logs").status_code == 404


def test_another_owners_job_log_is_404(keyed_api: dict[str, Api]) -> None:
    job_id = keyed_api["alice"].post("/api/v1/jobs", json={"type": "noop"}).json()["id"]
    assert keyed_api["alice"].get(f"/api/v1/jobs/{job_id}/logs").status_code == 200
    assert keyed_api["bob"].get(f"/api/v1/jobs/{job_id}/logs").status_code == 404
    assert keyed_api["root"].get(f"/api/v1/jobs/{job_id}/logs").status_code == 200


def test_a_deleted_jobs_log_goes_with_it(live_api: Api, store: JobStore) -> None:
    job = run(live_api, "test_chatty", {"lines": 2})
    assert store.db["job_logs"].count_documents({"job": job["id"]}) == 5
    assert live_api.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    assert store.db["job_logs"].count_documents({"job": job["id"]}) == 0
    assert store.db["job_log_attempts"].count_documents({"job": job["id"]}) == 0


def test_the_sweep_removes_logs_whose_job_expired_and_keeps_the_rest(
    live_api: Api, store: JobStore, settings: Settings
) -> None:
    kept, expired = (run(live_api, "test_chatty", {"lines": 1}) for _ in range(2))
    store.jobs.delete_one({"_id": expired["id"]})  # as the TTL index does
    due = {"$set": {"check_at": now() - timedelta(seconds=1)}}
    store.db["job_log_attempts"].update_many({"job": {"$in": [kept["id"], expired["id"]]}}, due)
    assert retention.sweep(settings, store.db)["logs_removed"] >= 1
    assert store.db["job_logs"].count_documents({"job": expired["id"]}) == 0
    assert store.db["job_logs"].count_documents({"job": kept["id"]}) == 4
    record = store.db["job_log_attempts"].find_one({"job": kept["id"]})
    assert record["check_at"] > store.jobs.find_one({"_id": kept["id"]})["expires_at"]


@pytest.fixture
def worker_at_warning() -> Iterator[list[logging.LogRecord]]:
    """This process's logging as a worker started at WARNING has it; every record made."""
    root = logging.getLogger()
    saved_root, saved_handlers = root.level, [(h, h.level) for h in root.handlers]
    saved = {name: logging.getLogger(name).level for name in joblog.MACHINERY}
    factory = logging.getLogRecordFactory()
    made: list[logging.LogRecord] = []

    def recorded(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record)
        return record

    root.setLevel(logging.WARNING)
    for name in joblog.MACHINERY:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.setLogRecordFactory(recorded)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)
        root.setLevel(saved_root)
        for handler, level in saved_handlers:
            handler.setLevel(level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_a_worker_at_warning_makes_no_info_records_of_its_own_while_a_job_logs(
    settings: Settings, store: JobStore, worker_at_warning: list[logging.LogRecord]
) -> None:
    job = {**new_job("noop", {}), "attempts": 1}
    with joblog.capture(settings, store.db, job) as captured:
        logging.getLogger("jobline.engine.worker").info("the worker's own line")
        logging.getLogger("celery.app.trace").info("Celery's own line")
        logging.getLogger("a_job_module").info("the job's line")
        logging.getLogger("jobline.engine.worker").warning("the worker's warning")
    made = [(r.name, r.levelname) for r in worker_at_warning]
    assert ("a_job_module", "INFO") in made
    assert ("jobline.engine.worker", "WARNING") in made
    assert not [name for name, level in made if level == "INFO" and name != "a_job_module"]
    assert captured.dropped == 0
    page = LogStore(store.db).page(job["_id"], 1, finished=True)
    lines = [line["message"] for line in page.items]
    assert lines == ["the job's line"]


@pytest.mark.parametrize("owned", [True, False])
def test_a_pure_attempts_log_claims_it_before_its_first_line_is_stored(
    settings: Settings, store: JobStore, owned: bool
) -> None:
    job = store.started(dict(store.insert(new_job("noop", {}))))
    asked: list[int] = []

    def before_write() -> bool:
        asked.append(len(LogStore(store.db).page(job["_id"], 1, finished=True).items))
        return owned

    with joblog.capture(settings, store.db, job, before_write):
        print("first")
        print("second")
    assert asked == [0]  # asked once, before anything of the log was written
    page = LogStore(store.db).page(job["_id"], 1, finished=True)
    # An attempt that lost its job (cancelled meanwhile) leaves no line behind.
    assert [line["message"] for line in page.items] == (["first", "second"] if owned else [])
