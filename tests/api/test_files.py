"""Files: uploads streamed into GridFS, downloads, FileRef params, and the files jobs make."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator

import pytest

from jobline.store.files import FileStore
from jobline.store.jobs import JobStore
from tests.conftest import Api

BODY = b"GATTACA\n" * 1000


def upload(api: Api, data: bytes = BODY, name: str = "reads.fa", kind: str = "text/plain") -> dict:
    response = api.post("/api/v1/files", files={"file": (name, data, kind)})
    assert response.status_code == 201, response.text
    return response.json()


def stored(store: JobStore) -> tuple[int, int]:
    """How many files and chunks GridFS holds."""
    return store.db["fs.files"].count_documents({}), store.db["fs.chunks"].count_documents({})


def submit(api: Api, type: str, params: dict) -> dict:
    return api.submit_and_wait("/api/v1/jobs", {"type": type, "params": params})


def test_an_upload_is_stored_and_its_metadata_and_bytes_come_back(idle_api: Api) -> None:
    response = idle_api.post("/api/v1/files", files={"file": ("reads.fa", BODY, "text/plain")})
    assert response.status_code == 201
    record = response.json()
    assert response.headers["Location"] == f"/api/v1/files/{record['id']}"
    assert record["name"] == "reads.fa" and record["size"] == len(BODY)
    assert record["content_type"] == "text/plain"
    assert record["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert record["created_at"] < record["expires_at"]
    assert idle_api.get(f"/api/v1/files/{record['id']}").json() == record
    content = idle_api.get(f"/api/v1/files/{record['id']}/content")
    assert content.status_code == 200 and content.content == BODY
    assert content.headers["Content-Type"] == "text/plain"
    assert content.headers["Content-Length"] == str(len(BODY))
    assert content.headers["Content-Disposition"].startswith('attachment; filename="reads.fa"')
    assert content.headers["ETag"] == f'"{record["sha256"]}"'
    again = idle_api.get(
        f"/api/v1/files/{record['id']}/content", headers={"If-None-Match": content.headers["ETag"]}
    )
    assert again.status_code == 304 and again.content == b""


def test_an_upload_of_several_chunks_is_streamed_in_and_out_intact(idle_api: Api) -> None:
    data = bytes(range(256)) * 6000  # 1.5 MB: six GridFS chunks
    record = upload(idle_api, data, "blob.bin", "application/octet-stream")
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert idle_api.get(f"/api/v1/files/{record['id']}/content").content == data


def test_a_file_can_be_deleted_and_is_then_gone(idle_api: Api, store: JobStore) -> None:
    record = upload(idle_api)
    assert idle_api.delete(f"/api/v1/files/{record['id']}").status_code == 204
    assert idle_api.get(f"/api/v1/files/{record['id']}").status_code == 404
    assert store.db["fs.chunks"].count_documents({"files_id": record["id"]}) == 0


def test_files_are_listed_newest_first_a_page_at_a_time(idle_api: Api, store: JobStore) -> None:
    store.db["fs.files"].delete_many({})
    made = [upload(idle_api, name=f"{n}.fa")["id"] for n in range(3)]
    first = idle_api.get("/api/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in first["items"]] == made[:0:-1]
    assert first["items"][0] == idle_api.get(f"/api/v1/files/{made[2]}").json()
    rest = idle_api.get("/api/v1/files", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [f["id"] for f in rest.json()["items"]] == [made[0]]
    assert rest.json()["next_cursor"] is None
    assert {f["kind"] for f in first["items"]} == {"upload"}
    assert idle_api.get("/api/v1/files", params={"kind": "output"}).json()["items"] == []
    assert len(idle_api.get("/api/v1/files", params={"kind": "upload"}).json()["items"]) == 3
    assert idle_api.get("/api/v1/files", params={"kind": "both"}).status_code == 422
    assert idle_api.get("/api/v1/files", params={"cursor": "nonsense"}).status_code == 400
    unread = idle_api.get("/api/v1/files", params={"name": "0.fa"})
    assert unread.status_code == 422 and unread.json()["errors"][0]["loc"] == ["query", "name"]


def test_a_key_lists_its_own_files_and_an_admin_every_ones(keyed_api: dict[str, Api]) -> None:
    alices, bobs = upload(keyed_api["alice"])["id"], upload(keyed_api["bob"])["id"]

    def listed(who: str) -> set[str]:
        response = keyed_api[who].get("/api/v1/files", params={"limit": 500})
        assert response.status_code == 200, response.text
        return {f["id"] for f in response.json()["items"]}

    assert alices in listed("alice") and bobs not in listed("alice")
    assert bobs in listed("bob") and alices not in listed("bob")
    assert {alices, bobs} <= listed("root")
    assert keyed_api["anonymous"].get("/api/v1/files").status_code == 401


def multipart(name: str | None, data: bytes, field: str = "file") -> tuple[bytes, str]:
    boundary = "jobline-test-boundary"
    disposition = f'form-data; name="{field}"' + (
        f'; filename="{name}"' if name is not None else ""
    )
    body = (
        (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


BAD_UPLOADS = [
    ("no file field", *multipart("a.txt", b"data", field="other"), 422),
    ("a field that is not a file", *multipart(None, b"data"), 422),
    ("an empty file", *multipart("a.txt", b""), 422),
    ("a file with no name", *multipart("", b"data"), 422),
    ("a name with a slash", *multipart("../etc/passwd", b"data"), 422),
    # Quoted in the header as a\\b.txt, which unquotes to a\b.txt.
    ("a name with a backslash", *multipart("a\\\\b.txt", b"data"), 422),
    ("a name with a control character", *multipart("a\x07b.txt", b"data"), 422),
    ("a file over the limit", *multipart("big.bin", b"x" * 2_000_001), 413),
    ("a body over the limit", *multipart("big.bin", b"x" * 3_000_000), 413),
    ("JSON instead of a form", b'{"file": "x"}', "application/json", 415),
    ("a form with no boundary", b"--x\r\n", "multipart/form-data", 400),
    (
        "a body that ends before its closing boundary",
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\ndata',
        "multipart/form-data; boundary=b",
        400,
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_a_bad_upload_gets_a_problem_and_nothing_is_kept(
    idle_api: Api, store: JobStore, body: bytes, content_type: str, status: int
) -> None:
    before = stored(store)
    response = idle_api.post("/api/v1/files", data=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert stored(store) == before


def test_a_chunked_upload_past_the_limit_gets_413_and_nothing_is_kept(
    idle_api: Api, store: JobStore
) -> None:
    body, content_type = multipart("big.bin", b"x" * 3_000_000)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]

    before = stored(store)
    response = idle_api.post("/api/v1/files", data=pieces(), headers={"Content-Type": content_type})
    assert response.status_code == 413
    assert stored(store) == before


def test_an_upload_cut_short_gets_400_and_nothing_is_kept(idle_api: Api, store: JobStore) -> None:
    body, content_type = multipart("reads.fa", b"A" * 600_000)
    host, port = idle_api.base.removeprefix("http://").split(":")
    before = stored(store)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /api/v1/files HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:400_000])
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"400"
    assert stored(store) == before


def test_another_owners_file_is_404(keyed_api: dict[str, Api]) -> None:
    record = upload(keyed_api["alice"])
    for path in (f"/api/v1/files/{record['id']}", f"/api/v1/files/{record['id']}/content"):
        assert keyed_api["bob"].get(path).status_code == 404
        assert keyed_api["alice"].get(path).status_code == 200
    assert keyed_api["bob"].delete(f"/api/v1/files/{record['id']}").status_code == 404
    job = {"type": "test_maker", "params": {"source": record["id"]}}
    refused = keyed_api["bob"].post("/api/v1/jobs", json=job)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["params", "source"]
    assert keyed_api["alice"].post("/api/v1/jobs", json=job).status_code == 202


@pytest.mark.parametrize(
    "source",
    ["not-an-id", "0193a0d4-0000-7000-8000-000000000000", 42],
    ids=["not an id", "an id no file has", "a number"],
)
def test_a_file_ref_that_names_no_file_of_the_callers_is_refused_naming_the_field(
    idle_api: Api, store: JobStore, source: object
) -> None:
    response = idle_api.post(
        "/api/v1/jobs", json={"type": "test_maker", "params": {"source": source}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["params", "source"]
    assert store.jobs.count_documents({}) == 0


def test_a_job_reads_its_input_and_its_files_are_listed_and_downloadable(live_api: Api) -> None:
    record = upload(live_api)
    job = submit(live_api, "test_maker", {"source": record["id"], "outputs": {"ré sumé.txt": "hi"}})
    assert job["status"] == "succeeded" and job["result"] == {"size": len(BODY)}
    by_name = {f["name"]: f for f in job["files"]}
    assert set(by_name) == {"copy.bin", "ré sumé.txt"}
    copy = by_name["copy.bin"]
    assert copy["size"] == len(BODY) and copy["sha256"] == record["sha256"]
    assert copy["content_type"] == "application/octet-stream"
    assert live_api.get(copy["url"]).content == BODY
    text = live_api.get(by_name["ré sumé.txt"]["url"])
    assert text.content == b"hi (attempt 1)" and text.headers["Content-Type"] == "text/plain"
    assert "filename*=UTF-8''r%C3%A9%20sum%C3%A9.txt" in text.headers["Content-Disposition"]
    missing = live_api.get(f"/api/v1/jobs/{job['id']}/files/nothing.txt")
    assert missing.status_code == 404


def test_a_file_an_unfinished_job_uses_cannot_be_deleted_until_it_ends(live_api: Api) -> None:
    record = upload(live_api)
    response = live_api.post(
        "/api/v1/jobs", json={"type": "test_maker", "params": {"source": record["id"], "wait": 2}}
    )
    assert live_api.get(f"/api/v1/files/{record['id']}").json()["expires_at"] is None
    refused = live_api.delete(f"/api/v1/files/{record['id']}")
    assert refused.status_code == 409
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert live_api.wait_terminal(response.headers["Location"])["status"] == "succeeded"
    assert live_api.delete(f"/api/v1/files/{record['id']}").status_code == 204


def test_a_job_whose_input_was_deleted_under_it_fails_with_bad_input_and_is_not_retried(
    live_api: Api, store: JobStore, settings
) -> None:
    record = upload(live_api)
    response = live_api.post(
        "/api/v1/jobs", json={"type": "test_maker", "params": {"source": record["id"], "wait": 1}}
    )
    FileStore.of(settings, store.db).bucket.delete(record["id"])
    job = live_api.wait_terminal(response.headers["Location"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["reason"] == "bad_input"
    assert record["id"] in job["error"]["message"]
    # Running it again would meet the same missing file: refused, not queued to fail.
    refused = live_api.post(f"/api/v1/jobs/{job['id']}/retry")
    assert refused.status_code == 409 and record["id"] in refused.json()["detail"]
    again = live_api.get(f"/api/v1/jobs/{job['id']}").json()
    assert (again["status"], again["attempts"]) == ("failed", 1)


def test_a_new_attempt_replaces_the_files_of_the_failed_one_before(
    live_api: Api, store: JobStore
) -> None:
    failed = submit(live_api, "test_maker", {"per_attempt": True, "fail": True})
    assert failed["status"] == "failed"
    assert [f["name"] for f in failed["files"]] == ["attempt-1.txt"]  # kept for inspection
    first_url = failed["files"][0]["url"]
    assert live_api.get(first_url).content == b"made by this attempt"
    live_api.post(f"/api/v1/jobs/{failed['id']}/retry")
    deadline = time.monotonic() + 30
    again = failed
    while again["attempts"] < 2 or again["status"] != "failed":
        assert time.monotonic() < deadline, again
        time.sleep(0.1)
        again = live_api.get(f"/api/v1/jobs/{failed['id']}").json()
    assert [f["name"] for f in again["files"]] == ["attempt-2.txt"]
    assert live_api.get(first_url).status_code == 404
    outputs = store.db["fs.files"].count_documents({"metadata.jobs": failed["id"]})
    assert outputs == 1


def test_a_deleted_jobs_files_go_with_it(live_api: Api, store: JobStore) -> None:
    job = submit(live_api, "test_maker", {"outputs": {"a.txt": "a", "b.txt": "b"}})
    assert store.db["fs.files"].count_documents({"metadata.jobs": job["id"]}) == 2
    assert live_api.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    assert store.db["fs.files"].count_documents({"metadata.jobs": job["id"]}) == 0
