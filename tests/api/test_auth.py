"""API keys and isolation: who may call the API, and whose jobs each key sees."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import requests

from jobline.core import ids
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.keys import KeyStore
from tests.conftest import Api, settings_env

CALCS = "/api/v1/calculations"
JOBS = "/api/v1/jobs"
ADA = {"name": "Ada", "weight": 55, "height": 170}
# The same job, as each resource takes it.
BODIES = {CALCS: ADA, JOBS: {"type": "bmi", "params": ADA}}

# Every endpoint that needs a key; {id} is an existing job's id.
PROTECTED = [
    *[
        (method, base + suffix)
        for base in (CALCS, JOBS)
        for method, suffix in [
            ("GET", ""),
            ("POST", ""),
            ("GET", "/{id}"),
            ("DELETE", "/{id}"),
            ("POST", "/{id}/cancel"),
            ("POST", "/{id}/retry"),
        ]
    ],
    ("POST", JOBS + ":batch"),
    ("GET", "/api/v1/job-types"),
    ("GET", "/api/v1/job-types/bmi"),
    ("GET", "/api/v1/nowhere"),
]


def _submit(api: Api, base: str = CALCS) -> dict[str, Any]:
    response = api.post(base, json=BODIES[base])
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def _assert_401(response: Any, *, invalid: bool) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is invalid


BAD_AUTHORIZATION = [
    ("", False),
    ("Bearer", False),
    ("Bearer   ", False),
    ("Basic YWxpY2U6c2VjcmV0", False),
    ("Bearer " + "x" * 5000, True),
    ('Bearer {"$ne": null}', True),
    ("Bearer jl_not-a-key-we-ever-made", True),
]


def _refused(
    keyed_api: dict[str, Api], store: JobStore, method: str, path: str, authorization: str | None
) -> requests.Response:
    job = _submit(keyed_api["alice"])
    before = list(store.jobs.find())
    headers = {} if authorization is None else {"Authorization": authorization}
    body = {"jobs": [BODIES[JOBS]]} if path.endswith(":batch") else BODIES[JOBS]
    url = path.replace("{id}", job["id"])
    response = keyed_api["anonymous"].request(method, url, json=body, headers=headers)
    assert list(store.jobs.find()) == before
    return response


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", [None, "Bearer jl_not-a-key-we-ever-made"])
def test_every_endpoint_refuses_a_missing_or_unknown_key_with_401_and_changes_nothing(
    keyed_api: dict[str, Api],
    store: JobStore,
    method: str,
    path: str,
    authorization: str | None,
) -> None:
    response = _refused(keyed_api, store, method, path, authorization)
    _assert_401(response, invalid=authorization is not None)


@pytest.mark.parametrize(("authorization", "invalid"), BAD_AUTHORIZATION)
def test_malformed_authorization_headers_get_401(
    keyed_api: dict[str, Api], store: JobStore, authorization: str, invalid: bool
) -> None:
    response = _refused(keyed_api, store, "POST", JOBS, authorization)
    _assert_401(response, invalid=invalid)


def test_a_revoked_key_is_refused_within_the_key_cache_time(
    keyed_api: dict[str, Api], store: JobStore
) -> None:
    keys = KeyStore(store.db)
    carol = Api(keyed_api["anonymous"].base, keys.create("carol"))
    assert carol.get(CALCS).status_code == 200
    keys.revoke("carol")
    deadline = time.monotonic() + 10  # keyed_served caches lookups for 1 s
    while (response := carol.get(CALCS)).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key kept working"
        time.sleep(0.1)
    _assert_401(response, invalid=True)


@pytest.mark.parametrize(
    "path", ["/healthz", "/metrics", "/api/v1/", "/api/v1/swagger.json", "/api/v1/docs"]
)
def test_probes_metrics_and_docs_need_no_key(keyed_api: dict[str, Api], path: str) -> None:
    assert keyed_api["anonymous"].get(path).status_code == 200


def test_readyz_needs_no_key(keyed_api: dict[str, Api]) -> None:
    # No worker consumes the keyed app's broker, so it is not ready; but it answers.
    assert keyed_api["anonymous"].get("/readyz").status_code in (200, 503)


def test_a_job_records_the_name_of_the_key_that_submitted_it(
    keyed_api: dict[str, Api], store: JobStore, idle_api: Api
) -> None:
    job = _submit(keyed_api["alice"])
    assert store.jobs.find_one({"_id": job["id"]})["owner"] == "alice"  # type: ignore[index]


def test_a_job_submitted_with_auth_off_has_no_owner(idle_api: Api, store: JobStore) -> None:
    job = _submit(idle_api)
    assert store.jobs.find_one({"_id": job["id"]})["owner"] is None  # type: ignore[index]


@pytest.mark.parametrize("base", [CALCS, JOBS])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("POST", "/retry")],
)
def test_another_owners_job_is_404_and_untouched(
    keyed_api: dict[str, Api], store: JobStore, base: str, method: str, suffix: str
) -> None:
    job = _submit(keyed_api["alice"], base)
    if suffix == "/retry":  # make it retryable, so only ownership can refuse it
        assert keyed_api["alice"].post(f"{base}/{job['id']}/cancel").status_code == 200
    before = store.jobs.find_one({"_id": job["id"]})
    response = keyed_api["bob"].request(method, f"{base}/{job['id']}{suffix}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    unknown = keyed_api["bob"].request(method, f"{base}/{ids.new_id()}{suffix}")
    assert unknown.json()["title"] == response.json()["title"]  # ids leak nothing
    assert store.jobs.find_one({"_id": job["id"]}) == before


@pytest.mark.parametrize(
    "listing",
    [CALCS, JOBS, JOBS + "?type=bmi", JOBS + "?status=queued&type=bmi", CALCS + "?limit=1"],
)
def test_each_owner_lists_only_their_own_jobs(keyed_api: dict[str, Api], listing: str) -> None:
    alices = {_submit(keyed_api["alice"], base)["id"] for base in (CALCS, JOBS)}
    bobs = {_submit(keyed_api["bob"])["id"]}

    def listed(name: str) -> set[str]:
        seen: set[str] = set()
        url: str | None = listing
        while url:
            body = keyed_api[name].get(url).json()
            seen |= {item["id"] for item in body["items"]}
            cursor = body["next_cursor"]
            url = f"{listing}&cursor={cursor}" if cursor and "?" in listing else None
        return seen

    assert listed("alice") == alices
    assert listed("bob") == bobs
    assert listed("root") == alices | bobs


def test_a_batch_records_its_owner_and_stays_hidden_from_others(
    keyed_api: dict[str, Api], store: JobStore
) -> None:
    response = keyed_api["alice"].post(JOBS + ":batch", json={"jobs": [BODIES[JOBS]] * 2})
    assert response.status_code == 200, response.text
    made = [r["id"] for r in response.json()["results"]]
    owners = [store.jobs.find_one({"_id": i})["owner"] for i in made]  # type: ignore[index]
    assert owners == ["alice", "alice"]
    assert keyed_api["bob"].get(JOBS).json()["items"] == []
    assert keyed_api["bob"].get(f"{JOBS}/{made[0]}").status_code == 404


def test_idempotency_keys_belong_to_one_owner(keyed_api: dict[str, Api], store: JobStore) -> None:
    key = {"Idempotency-Key": "order-42"}
    alice = keyed_api["alice"].post(JOBS, json=BODIES[JOBS], headers=key)
    bob = keyed_api["bob"].post(JOBS, json=BODIES[JOBS], headers=key)
    assert (alice.status_code, bob.status_code) == (202, 202)
    assert alice.json()["id"] != bob.json()["id"]
    again = keyed_api["alice"].post(JOBS, json=BODIES[JOBS], headers=key)
    assert again.status_code == 200 and again.json()["id"] == alice.json()["id"]
    other = keyed_api["bob"].post(JOBS, json={"type": "noop"}, headers=key)
    assert other.status_code == 409
    assert "bob:" not in other.text and "alice" not in other.text


def test_an_owner_can_cancel_retry_and_delete_their_own_job(
    keyed_api: dict[str, Api], store: JobStore
) -> None:
    alice = keyed_api["alice"]
    job = _submit(alice)
    assert alice.get(f"{CALCS}/{job['id']}").json()["id"] == job["id"]
    assert alice.post(f"{CALCS}/{job['id']}/cancel").json()["status"] == "cancelled"
    assert alice.post(f"{CALCS}/{job['id']}/retry").status_code == 202
    assert alice.delete(f"{CALCS}/{job['id']}").status_code == 204
    assert store.jobs.find_one({"_id": job["id"]}) is None


def test_an_admin_key_sees_cancels_retries_and_deletes_anyones_job(
    keyed_api: dict[str, Api], store: JobStore
) -> None:
    root = keyed_api["root"]
    job = _submit(keyed_api["bob"])
    assert root.get(f"{CALCS}/{job['id']}").json()["id"] == job["id"]
    assert root.post(f"{CALCS}/{job['id']}/cancel").json()["status"] == "cancelled"
    retried = root.post(f"{CALCS}/{job['id']}/retry")
    assert retried.status_code == 202
    assert store.jobs.find_one({"_id": job["id"]})["owner"] == "bob"  # type: ignore[index]
    assert root.delete(f"{CALCS}/{job['id']}").status_code == 204
    assert store.jobs.find_one({"_id": job["id"]}) is None


def test_keys_are_stored_only_as_hashes(api_keys: dict[str, str], store: JobStore) -> None:
    stored = " ".join(str(doc) for doc in store.db["api_keys"].find())
    for key in api_keys.values():
        assert key not in stored
        assert key[len("jl_") + 8 :] not in stored


def test_the_api_refuses_to_serve_without_keys_on_a_public_address(settings: Any) -> None:
    env = settings_env(settings) | {"JOBLINE_AUTH": "off"}
    port = str(local.free_port())
    result = subprocess.run(
        local.jobline_argv("api", "--host", "0.0.0.0", "--port", port),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JOBLINE_AUTH=off is only allowed on a loopback address" in result.stderr


SCHEDULES = "/api/v1/schedules"
HOURLY = {"type": "bmi", "params": ADA, "interval_seconds": 3600}


def _schedule(api: Api) -> dict[str, Any]:
    response = api.post(SCHEDULES, json=HOURLY)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", ""), ("GET", "/{id}"), ("DELETE", "/{id}")]
)
def test_schedules_need_a_key(
    keyed_api: dict[str, Api], store: JobStore, method: str, suffix: str
) -> None:
    made = _schedule(keyed_api["alice"])
    before = list(store.db["schedules"].find())
    url = SCHEDULES + suffix.replace("{id}", made["id"])
    _assert_401(keyed_api["anonymous"].request(method, url, json=HOURLY), invalid=False)
    assert list(store.db["schedules"].find()) == before
    assert keyed_api["alice"].delete(f"{SCHEDULES}/{made['id']}").status_code == 204


def test_another_owners_schedule_is_404_unlisted_and_kept(
    keyed_api: dict[str, Api], store: JobStore
) -> None:
    alice, bob, root = keyed_api["alice"], keyed_api["bob"], keyed_api["root"]
    made = _schedule(alice)
    assert store.db["schedules"].find_one({"_id": made["id"]})["owner"] == "alice"  # type: ignore[index]
    assert bob.get(f"{SCHEDULES}/{made['id']}").status_code == 404
    assert bob.delete(f"{SCHEDULES}/{made['id']}").status_code == 404
    assert made["id"] not in {s["id"] for s in bob.get(SCHEDULES).json()["items"]}
    assert alice.get(f"{SCHEDULES}/{made['id']}").status_code == 200
    assert made["id"] in {s["id"] for s in root.get(SCHEDULES).json()["items"]}
    assert root.delete(f"{SCHEDULES}/{made['id']}").status_code == 204


def test_a_schedules_jobs_belong_to_the_schedules_owner(
    keyed_api: dict[str, Api], store: JobStore, settings: Any
) -> None:
    from jobline import jobs
    from jobline.engine.pipeline import Pipeline
    from jobline.engine.queue import make_celery
    from jobline.engine.schedules import fire
    from tests.conftest import idle_settings

    made = _schedule(keyed_api["alice"])
    idle = idle_settings(settings)
    pipeline = Pipeline(idle, store, make_celery(idle), jobs.load(idle.job_module_list))
    job_id = fire(pipeline, made["id"])
    assert job_id is not None
    assert keyed_api["alice"].get(f"{JOBS}/{job_id}").json()["schedule_id"] == made["id"]
    assert keyed_api["bob"].get(f"{JOBS}/{job_id}").status_code == 404
    keyed_api["alice"].delete(f"{SCHEDULES}/{made['id']}")


def _events(api: Api, path: str) -> requests.Response:
    response = api.http.get(api.url(path), stream=True, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _job_ids_seen(response: requests.Response, until: str) -> list[str]:
    """Ids of the job events on an open stream, up to and including the job ``until``."""
    seen: list[str] = []
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if line.startswith("data:"):
            data = json.loads(line[5:])
            assert "owner" not in data  # routing only, never shown
            seen.append(data["id"])
            if data["id"] == until:
                break
    response.close()
    return seen


def test_the_all_jobs_stream_shows_each_key_only_its_own_jobs_and_an_admin_all(
    keyed_api: dict[str, Api],
) -> None:
    alice_stream = _events(keyed_api["alice"], "/api/v1/events")
    root_stream = _events(keyed_api["root"], "/api/v1/events")
    # A stream answers once Redis confirmed its subscription: no job below is missed.
    bobs = _submit(keyed_api["bob"], JOBS)["id"]
    alices = _submit(keyed_api["alice"], JOBS)["id"]
    assert _job_ids_seen(alice_stream, until=alices) == [alices]
    assert _job_ids_seen(root_stream, until=alices) == [bobs, alices]


def test_another_owners_job_stream_is_404(keyed_api: dict[str, Api]) -> None:
    bobs = _submit(keyed_api["bob"], JOBS)["id"]
    response = keyed_api["alice"].get(f"{JOBS}/{bobs}/events")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    _assert_401(keyed_api["anonymous"].get(f"{JOBS}/{bobs}/events"), invalid=False)
    _assert_401(keyed_api["anonymous"].get("/api/v1/events"), invalid=False)
    first = _events(keyed_api["bob"], f"{JOBS}/{bobs}/events")
    assert _job_ids_seen(first, until=bobs) == [bobs]


def test_the_board_page_loads_without_a_key_and_shows_no_jobs(
    keyed_api: dict[str, Api],
) -> None:
    job = _submit(keyed_api["alice"], JOBS)
    page = keyed_api["anonymous"].get("/")
    assert page.status_code == 200
    assert job["id"] not in page.text
