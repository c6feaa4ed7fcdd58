"""Helpers for the reliability and fault tests: waiting on jobs in the store, reading journals."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pymongo import MongoClient, monitoring

from jobline import jobs
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.store.jobs import JobStore
from jobline.store.records import Job

TERMINAL = {"succeeded", "failed", "cancelled"}


def make_pipeline(settings: Settings, store: JobStore | None = None) -> Pipeline:
    """A pipeline like the API's, for submitting job types the HTTP API does not expose."""
    store = store or JobStore(settings)
    return Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def wait_job(
    store: JobStore, job_id: str, until: Callable[[Job], bool] | None = None, timeout: float = 30
) -> Job:
    """The job once ``until(job)`` holds (by default: once it is terminal)."""
    until = until or (lambda job: job["status"] in TERMINAL)
    seen: list[Job] = []

    def check() -> Job | None:
        job = store.get(job_id)
        seen[:] = [job]
        return job if until(job) else None

    try:
        return wait_until(check, timeout, f"job {job_id}")  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen}") from None


def wait_all_terminal(store: JobStore, job_ids: Iterable[str], timeout: float) -> list[Job]:
    """Every job of ``job_ids`` once all are terminal, in the same order."""
    wanted = list(job_ids)
    # Ids grow with time: a range on _id uses its index, where {$in: [2,000 ids]}
    # makes the embedded server scan for seconds, starving the workers.
    span = {"$gte": min(wanted), "$lte": max(wanted)}
    ended = {"_id": span, "status": {"$in": sorted(TERMINAL)}}
    every = 0.1 if len(wanted) < 50 else 2.0

    def all_ended() -> bool:
        done = {job["_id"] for job in store.jobs.find(ended, {"_id": 1})}
        return done.issuperset(wanted)

    try:
        wait_until(all_ended, timeout, "jobs", every)
    except AssertionError:
        left = Counter(job["status"] for job in store.jobs.find({"_id": span}))
        raise AssertionError(f"not all of {len(wanted)} jobs ended in {timeout}s: {left}") from None
    found = {job["_id"]: job for job in store.jobs.find({"_id": span})}
    return [found[i] for i in wanted]


def journal(path: Path) -> list[list[str]]:
    """The lines a test job type noted, split into words."""
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def starts(path: Path) -> Counter[str]:
    """How many attempts of each job started, by job id."""
    return Counter(words[1] for words in journal(path) if words[0] == "start")


def ticks(path: Path, job_id: str) -> int:
    """How many times the job ``test_deaf`` ticked so far."""
    return sum(1 for words in journal(path) if words[:2] == ["tick", job_id])


def wait_stopped_ticking(path: Path, job_id: str, timeout: float) -> float:
    """When (time.monotonic()) the job last ticked, once it has been quiet for a second."""
    last = [ticks(path, job_id), time.monotonic()]

    def quiet_for_a_second() -> bool:
        now, count = time.monotonic(), ticks(path, job_id)
        if count != last[0]:
            last[:] = [count, now]
        return now - last[1] >= 1.0

    wait_until(quiet_for_a_second, timeout, f"job {job_id} to stop", every=0.1)
    return last[1]


def successes_logged(logs: str, job_id: str) -> int:
    """How many attempts of ``job_id`` recorded a success, by the workers' own JSON logs."""
    found = 0
    for line in logs.splitlines():
        if job_id not in line or '"job succeeded"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:  # cut short by a kill
            continue
        found += record.get("message") == "job succeeded" and record.get("job_id") == job_id
    return found


def _plan_stages(plan: dict[str, Any]) -> set[str]:
    stages = {plan["stage"]}
    for child in [plan.get("inputStage"), *plan.get("inputStages", [])]:
        if child:
            stages |= _plan_stages(child)
    return stages


def _scanned_keys(plan: dict[str, Any]) -> list[str]:
    """The fields of the index the plan scans."""
    if "keyPattern" in plan:
        return list(plan["keyPattern"])
    return next(
        _scanned_keys(c) for c in [plan.get("inputStage"), *plan.get("inputStages", [])] if c
    )


def assert_index_range_scan(collection: Any, query: dict[str, Any]) -> None:
    """A page of ``query`` newest first is an index scan whose leading fields are the
    query's equalities, then ``_id``: never the whole collection."""
    plan = collection.find(query).sort("_id", -1).limit(51).explain()["queryPlanner"]
    stages = _plan_stages(plan["winningPlan"])
    assert "IXSCAN" in stages and "COLLSCAN" not in stages, (query, plan["winningPlan"])
    fields = _scanned_keys(plan["winningPlan"])
    equalities = set(query) - {"_id"}
    assert set(fields[: len(equalities)]) == equalities, (query, fields)
    assert fields[len(equalities)] == "_id", (query, fields)


class Finds(monitoring.CommandListener):
    """The filter of every find a client sends (``MongoClient(url, event_listeners=[…])``)."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.filters.append(dict(event.command["filter"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def listed_by_index_scans(
    url: str, collection: Any, lister: Callable[[Any], Callable[..., Any]], **filters: Any
) -> list[str]:
    """The ids of two pages of a list (2, then the rest), read through a client of their
    own; every find those pages sent is asserted an index range scan."""
    finds = Finds()
    client: MongoClient[dict[str, Any]] = MongoClient(url, event_listeners=[finds])
    try:
        read = lister(client[collection.database.name])
        first = read(limit=2, **filters)
        rest = read(limit=50, cursor=first.next_cursor, **filters)
    finally:
        client.close()
    assert finds.filters
    for query in finds.filters:
        assert_index_range_scan(collection, query)
    return [doc["_id"] for doc in first.items + rest.items]
