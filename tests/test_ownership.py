"""Jobs made with auth off belong to no one, until `jobline jobs adopt` hands them to a key.

Workflows, schedules and files made so are handed over with them."""

from __future__ import annotations

import subprocess

import pytest

from jobline.core.settings import Settings
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, settings_env

NOOP = {"type": "noop", "params": {}}


def adopt(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        local.jobline_argv("jobs", "adopt", *args),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def submitted(api: Api, key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    response = api.post("/api/v1/jobs", json=NOOP, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_jobs_workflows_and_schedules_made_with_auth_off_are_handed_to_a_keys_owner(
    settings: Settings, idle_api: Api, keyed_api: dict[str, Api], store: JobStore
) -> None:
    alice, bob, root = keyed_api["alice"], keyed_api["bob"], keyed_api["root"]
    store.db["workflows"].delete_many({"owner": None})  # other tests' own, long ended
    store.db["fs.files"].delete_many({"metadata.owner": None})
    plain, keyed = submitted(idle_api), submitted(idle_api, key="order-1")
    uploaded = idle_api.post("/api/v1/files", files={"file": ("reads.fa", b">a\nGATTACA\n")})
    assert uploaded.status_code == 201, uploaded.text
    upload = uploaded.json()["id"]
    made = idle_api.post("/api/v1/schedules", json={**NOOP, "interval_seconds": 3600})
    assert made.status_code == 201, made.text
    schedule = made.json()["id"]
    flow = idle_api.post("/api/v1/workflows", json={"steps": [{"id": "a", **NOOP}]})
    assert flow.status_code == 202, flow.text
    workflow = flow.json()["id"]
    step_job = flow.json()["steps"][0]["job_ids"][0]
    # Before: nobody's, so only an admin key sees them.
    for job_id in (plain, keyed, step_job):
        assert alice.get(f"/api/v1/jobs/{job_id}").status_code == 404
        assert root.get(f"/api/v1/jobs/{job_id}").status_code == 200
    assert alice.get(f"/api/v1/schedules/{schedule}").status_code == 404
    assert alice.get(f"/api/v1/workflows/{workflow}").status_code == 404
    assert alice.get(f"/api/v1/files/{upload}").status_code == 404
    reads_it = {"type": "test_maker", "params": {"source": upload}}
    assert alice.post("/api/v1/jobs", json=reads_it).status_code == 422  # not hers yet

    counted = adopt(settings, "--owner", "alice", "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.startswith("3 jobs, 1 workflow, 1 schedule and 1 file have no owner")
    assert alice.get(f"/api/v1/jobs/{plain}").status_code == 404  # a dry run changes nothing

    handed = adopt(settings, "--owner", "alice")
    assert handed.returncode == 0, handed.stderr
    assert handed.stdout.startswith("handed 3 jobs, 1 workflow, 1 schedule and 1 file ")
    assert "store mongodb://" in handed.stderr  # it says which store it changed
    for job_id in (plain, keyed, step_job):
        assert alice.get(f"/api/v1/jobs/{job_id}").status_code == 200
        assert bob.get(f"/api/v1/jobs/{job_id}").status_code == 404
    listed = {j["id"] for j in alice.get("/api/v1/jobs").json()["items"]}
    assert listed == {plain, keyed, step_job}
    assert alice.get(f"/api/v1/schedules/{schedule}").status_code == 200
    assert bob.get(f"/api/v1/schedules/{schedule}").status_code == 404
    assert alice.get(f"/api/v1/workflows/{workflow}").status_code == 200
    assert bob.get(f"/api/v1/workflows/{workflow}").status_code == 404
    assert workflow in {w["id"] for w in alice.get("/api/v1/workflows").json()["items"]}
    # Her uploads too: listed, hers to read, and hers for her jobs to read.
    assert alice.get(f"/api/v1/files/{upload}/content").content == b">a\nGATTACA\n"
    assert bob.get(f"/api/v1/files/{upload}").status_code == 404
    assert upload in {f["id"] for f in alice.get("/api/v1/files").json()["items"]}
    assert alice.post("/api/v1/jobs", json=reads_it).status_code == 202
    # The idempotency key moved with its job: alice repeating the request finds it.
    repeat = alice.post("/api/v1/jobs", json=NOOP, headers={"Idempotency-Key": "order-1"})
    assert repeat.status_code == 200 and repeat.json()["id"] == keyed

    again = adopt(settings, "--owner", "bob")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("handed 0 jobs, 0 workflows, 0 schedules and 0 files")
    assert alice.get(f"/api/v1/jobs/{plain}").status_code == 200  # never taken from an owner


def test_an_adopted_job_gives_up_a_key_its_new_owner_already_used(
    settings: Settings, idle_api: Api, keyed_api: dict[str, Api], store: JobStore
) -> None:
    alice = keyed_api["alice"]
    owned = alice.post("/api/v1/jobs", json=NOOP, headers={"Idempotency-Key": "order-2"})
    assert owned.status_code == 202, owned.text
    unowned = submitted(idle_api, key="order-2")

    handed = adopt(settings, "--owner", "alice")
    assert handed.returncode == 0, handed.stderr
    assert handed.stdout.startswith("handed 1 job, 0 workflows, ")
    assert alice.get(f"/api/v1/jobs/{unowned}").status_code == 200
    assert "idempotency_key" not in store.jobs.find_one({"_id": unowned})
    repeat = alice.post("/api/v1/jobs", json=NOOP, headers={"Idempotency-Key": "order-2"})
    assert repeat.status_code == 200 and repeat.json()["id"] == owned.json()["id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owner", "nobody-has-this"], "no key named 'nobody-has-this'"),
        (["--owner", "has space"], "Invalid value for '--owner'"),
        ([], "Missing option '--owner'"),
    ],
)
def test_adopting_needs_the_name_of_a_key(
    settings: Settings, api_keys: dict[str, str], args: list[str], message: str
) -> None:
    refused = adopt(settings, *args)
    assert refused.returncode != 0
    assert message in refused.stderr
