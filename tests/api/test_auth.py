"""API keys and isolation: who may call the API, and whose jobs each key sees."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from jobline import ids, local
from jobline.keys import KeyStore
from jobline.store import JobStore
from tests.conftest import Api, settings_env

CALCS = "/api/v1/calculations"
ADA = {"name": "Ada", "weight": 55, "height": 170}

# Every endpoint that needs a key; {id} is an existing job's id.
PROTECTED = [
    ("GET", CALCS),
    ("POST", CALCS),
    ("GET", CALCS + "/{id}"),
    ("DELETE", CALCS + "/{id}"),
    ("POST", CALCS + "/{id}/cancel"),
    ("POST", CALCS + "/{id}/retry"),
    ("GET", "/api/v1/nowhere"),
]


def _submit(api: Api) -> dict[str, Any]:
    response = api.post(CALCS, json=ADA)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def _assert_401(response: Any, *, invalid: bool) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is invalid


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    ("authorization", "invalid"),
    [
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer   ", False),
        ("Basic YWxpY2U6c2VjcmV0", False),
        ("Bearer jl_not-a-key-we-ever-made", True),
        ("Bearer " + "x" * 5000, True),
        ('Bearer {"$ne": null}', True),
    ],
)
def test_requests_without_a_valid_key_get_401_and_change_nothing(
    keyed_api: dict[str, Api],
    store: JobStore,
    method: str,
    path: str,
    authorization: str | None,
    invalid: bool,
) -> None:
    job = _submit(keyed_api["alice"])
    before = list(store.jobs.find())
    headers = {} if authorization is None else {"Authorization": authorization}
    response = keyed_api["anonymous"].request(
        method, path.format(id=job["id"]), json=ADA, headers=headers
    )
    _assert_401(response, invalid=invalid)
    assert list(store.jobs.find()) == before


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


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/api/v1/swagger.json", "/api/v1/docs"])
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


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("POST", "/retry")],
)
def test_another_owners_job_is_404_and_untouched(
    keyed_api: dict[str, Api], store: JobStore, method: str, suffix: str
) -> None:
    job = _submit(keyed_api["alice"])
    if suffix == "/retry":  # make it retryable, so only ownership can refuse it
        assert keyed_api["alice"].post(f"{CALCS}/{job['id']}/cancel").status_code == 200
    before = store.jobs.find_one({"_id": job["id"]})
    response = keyed_api["bob"].request(method, f"{CALCS}/{job['id']}{suffix}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    unknown = keyed_api["bob"].request(method, f"{CALCS}/{ids.new_id()}{suffix}")
    assert unknown.json()["title"] == response.json()["title"]  # ids leak nothing
    assert store.jobs.find_one({"_id": job["id"]}) == before


def test_each_owner_lists_only_their_own_jobs(keyed_api: dict[str, Api]) -> None:
    alices = {_submit(keyed_api["alice"])["id"] for _ in range(2)}
    bobs = {_submit(keyed_api["bob"])["id"]}

    def listed(name: str) -> set[str]:
        body = keyed_api[name].get(CALCS).json()
        return {item["id"] for item in body["items"]}

    assert listed("alice") == alices
    assert listed("bob") == bobs
    assert listed("root") == alices | bobs


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
