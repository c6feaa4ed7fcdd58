"""Retention: finished jobs carry expires_at, and the sweep (and MongoDB's TTL monitor) removes
them by their TTL index."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from jobline.core.settings import Settings
from jobline.engine import retention
from jobline.store.expiry import EXPIRING
from jobline.store.jobs import JobStore
from jobline.store.records import Job, new_job, now
from jobline.store.workflows import WorkflowStore
from tests.conftest import make_settings

DAY = 86400


@pytest.fixture
def store_with_ttl(settings: Settings, store: JobStore) -> Iterator[Callable[[int], JobStore]]:
    """A store on the session's database with the given JOBLINE_RESULT_TTL."""
    made: list[JobStore] = []

    def make(ttl: int) -> JobStore:
        s = make_settings(settings.redis_url, settings.mongo_url, result_ttl=ttl)
        made.append(JobStore(s))
        return made[-1]

    yield make
    for s in made:
        s.close()


def running(store: JobStore) -> Job:
    job = store.insert(new_job("noop", {}))
    claimed = store.claim(job["_id"])
    assert claimed is not None
    return claimed


FINISH: dict[str, Callable[[JobStore, Job], object]] = {
    "succeeded": lambda s, j: s.succeed(j["_id"], j["attempts"], None),
    "failed": lambda s, j: s.fail(j["_id"], j["attempts"], {"message": "x"}),
    "cancelled": lambda s, j: s.cancel(j["_id"]),
}


@pytest.mark.parametrize("status", FINISH)
def test_a_finished_job_expires_result_ttl_after_it_finished(
    store_with_ttl: Callable[[int], JobStore], status: str
) -> None:
    store = store_with_ttl(3 * DAY)
    job = running(store)
    assert store.get(job["_id"]).get("expires_at") is None
    FINISH[status](store, job)
    done = store.get(job["_id"])
    assert done["status"] == status
    assert done["expires_at"] - done["finished_at"] == timedelta(days=3)


@pytest.mark.parametrize("status", FINISH)
def test_a_ttl_of_zero_keeps_finished_jobs_forever(
    store_with_ttl: Callable[[int], JobStore], status: str
) -> None:
    store = store_with_ttl(0)
    job = running(store)
    FINISH[status](store, job)
    assert store.get(job["_id"])["expires_at"] is None


def test_a_retried_job_no_longer_expires(store_with_ttl: Callable[[int], JobStore]) -> None:
    store = store_with_ttl(DAY)
    job = running(store)
    store.fail(job["_id"], job["attempts"], {"message": "x"})
    store.restart(job["_id"], task_id="t")
    assert store.get(job["_id"])["expires_at"] is None


def test_the_ttl_index_is_on_expires_at(store: JobStore) -> None:
    indexes = store.jobs.index_information()
    ttl = [i for i in indexes.values() if "expireAfterSeconds" in i]
    assert [(i["key"], i["expireAfterSeconds"]) for i in ttl] == [([("expires_at", 1)], 0)]


def test_the_ttl_index_holds_only_jobs_that_will_expire(store: JobStore) -> None:
    ttl = next(i for i in store.jobs.index_information().values() if "expireAfterSeconds" in i)
    assert "$gt" in ttl["partialFilterExpression"]["expires_at"]


def test_an_older_deployments_whole_ttl_index_is_replaced_by_the_partial_one(
    settings: Settings,
) -> None:
    older = JobStore(make_settings(settings.redis_url, settings.mongo_url, mongo_db="jobline_old"))
    try:
        older.jobs.drop()
        older.jobs.create_index("expires_at", expireAfterSeconds=0)
        older.ensure_indexes()
        on_expiry = [i for i in older.jobs.index_information().values()
                     if i["key"] == [("expires_at", 1)]]  # fmt: skip
        assert len(on_expiry) == 1 and "partialFilterExpression" in on_expiry[0]
    finally:
        older.jobs.drop()
        older.close()


def test_the_sweep_removes_jobs_and_workflows_past_their_expiry_by_their_ttl_indexes(
    settings: Settings,
) -> None:
    store = JobStore(make_settings(settings.redis_url, settings.mongo_url, mongo_db="jobline_exp"))
    db = store.db
    try:
        for name in EXPIRING:
            db[name].drop()
        store.ensure_indexes()
        WorkflowStore(db).ensure_indexes()
        t = now()
        past, future = t - timedelta(seconds=1), t + timedelta(days=1)
        kept = [store.insert(new_job("noop", {}))["_id"]]  # unfinished: no expiry
        gone = []
        for expires_at, into in ((past, gone), (future, kept), (None, kept)):
            job = store.insert(new_job("noop", {}))
            store.jobs.update_one({"_id": job["_id"]}, {"$set": {"expires_at": expires_at}})
            into.append(job["_id"])
        db["workflows"].insert_many([{"_id": "w-old", "expires_at": past}, {"_id": "w-new"}])
        db["workflow_steps"].insert_one({"_id": "s-old", "expires_at": past})

        assert retention.sweep(settings, db) == {
            "jobs_expired": 1,
            "workflows_expired": 1,
            "workflow_steps_expired": 1,
        }
        assert sorted(j["_id"] for j in store.jobs.find()) == sorted(kept)
        assert [w["_id"] for w in db["workflows"].find()] == ["w-new"]
        # Each removal is a range read on the collection's TTL index, not a scan.
        for name, bound in EXPIRING.items():
            plan = db[name].find({"expires_at": {**bound, "$lt": t}}).explain()
            assert "IXSCAN" in json.dumps(plan["queryPlanner"]["winningPlan"], default=str), name
    finally:
        store.close()
