"""Workflows and uploaded files: split_fasta reads one, and a step may name only its owner's."""

from __future__ import annotations

from typing import Any

import pytest

from jobline.store.jobs import JobStore
from jobline.store.workflows import WorkflowStore
from tests.conftest import Api
from tests.workflows.support import WORKFLOWS, run, step

FASTA = ">exact\nGATTACA\n>close\nGATTACC\n>far\nCCCCCCC\n"


def upload(api: Api, text: str) -> str:
    response = api.post("/api/v1/files", files={"file": ("reads.fa", text.encode(), "text/plain")})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def split_align_rank(file_id: str) -> list[dict[str, Any]]:
    return [
        {"id": "split", "type": "split_fasta", "params": {"fasta_file": file_id}},
        {
            "id": "align",
            "type": "align",
            "params": {"seq_b": "GATTACA"},
            "needs": ["split"],
            "for_each": "split",
        },
        {"id": "rank", "type": "rank_alignments", "needs": ["split", "align"]},
    ]


def test_split_fasta_reads_an_uploaded_file_whose_records_fan_out_into_align_and_rank(
    wf_api: Api, store: JobStore
) -> None:
    file_id = upload(wf_api, FASTA)
    done = run(wf_api, split_align_rank(file_id), timeout=60)
    assert done["status"] == "succeeded", done["error"]
    assert [item["name"] for item in step(done, "split")["result"]] == ["exact", "close", "far"]
    ranking = step(done, "rank")["result"]["ranking"]
    assert [r["name"] for r in ranking] == ["exact", "close", "far"]
    # The step job keeps its input as a submitted job does: listed, and attached in GridFS.
    [split_job] = step(done, "split")["job_ids"]
    assert store.get(split_job)["inputs"] == [file_id]
    record = store.db["fs.files"].find_one({"_id": file_id})
    assert split_job in record["metadata"]["jobs"]
    assert wf_api.get(f"/api/v1/files/{file_id}").json()["expires_at"] is None


@pytest.mark.parametrize(
    "text",
    ["not fasta at all", ">a\n\n>b\nAC\n", "\n"],
    ids=["not FASTA", "a record without a sequence", "no record"],
)
def test_a_fasta_file_split_fasta_cannot_split_fails_the_workflow_with_bad_input(
    wf_api: Api, text: str
) -> None:
    done = run(wf_api, split_align_rank(upload(wf_api, text)), timeout=60)
    assert done["status"] == "failed"
    split = step(done, "split")
    assert split["status"] == "failed" and split["error"]["reason"] == "bad_input"
    assert "fasta_file" in split["error"]["message"]
    assert [step(done, s)["status"] for s in ("align", "rank")] == ["skipped", "skipped"]


@pytest.mark.parametrize("position", [0, 1], ids=["a first step", "a step with needs"])
def test_a_step_naming_a_file_its_owner_does_not_have_is_refused_and_nothing_is_stored(
    keyed_api: dict[str, Api], flows: WorkflowStore, store: JobStore, position: int
) -> None:
    alices = upload(keyed_api["alice"], FASTA)
    split = {"id": "split", "type": "split_fasta", "params": {"fasta_file": alices}}
    first = {"id": "first", "type": "test_greet", "params": {"name": "x"}}
    steps = [split] if position == 0 else [first, {**split, "needs": ["first"]}]
    refused = keyed_api["bob"].post(WORKFLOWS, json={"steps": steps})
    assert refused.status_code == 422, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    errors = refused.json()["errors"]
    assert [e["loc"] for e in errors] == [["steps", position, "params", "fasta_file"]]
    assert flows.workflows.count_documents({}) == 0 and store.jobs.count_documents({}) == 0
    accepted = keyed_api["alice"].post(WORKFLOWS, json={"steps": steps})
    assert accepted.status_code == 202, accepted.text


def test_a_fan_out_item_naming_no_stored_file_fails_its_step_naming_the_item(
    wf_api: Api, store: JobStore
) -> None:
    kept = upload(wf_api, FASTA)
    nowhere = "0193a0d4-0000-7000-8000-000000000000"
    items = [{"source": kept}, {"source": nowhere}]
    done = run(
        wf_api,
        [
            {"id": "list", "type": "test_list", "params": {"items": items}},
            {"id": "each", "type": "test_maker", "needs": ["list"], "for_each": "list"},
        ],
    )
    each = step(done, "each")
    assert done["status"] == "failed" and each["status"] == "failed"
    assert each["error"]["reason"] == "bad_input" and each["error"]["item"] == 1
    assert nowhere in each["error"]["message"]
    assert each["job_ids"] == [] and store.jobs.count_documents({"step": "each"}) == 0
