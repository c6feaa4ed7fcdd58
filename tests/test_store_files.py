"""File retention on GridFS (SecantusDB): unused uploads expire, used ones live with their jobs."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest

from jobline.core.errors import FileTooLarge
from jobline.core.settings import Settings
from jobline.engine import retention
from jobline.store.files import FileStore
from jobline.store.jobs import JobStore
from jobline.store.records import new_job, now
from tests.support import listed_by_index_scans


@pytest.fixture
def files(store: JobStore, settings: Settings) -> FileStore:
    store.jobs.delete_many({})
    return FileStore.of(settings, store.db)


def put(files: FileStore, data: bytes = b"ACGT" * 100_000, owner: str | None = None) -> str:
    record = files.upload(
        [data[i : i + 65536] for i in range(0, len(data), 65536)],
        name="reads.fa",
        content_type="text/plain",
        owner=owner,
        max_bytes=10_000_000,
    )
    return str(record["_id"])


def make_due(files: FileStore, file_id: str) -> None:
    files.files.update_one(
        {"_id": file_id}, {"$set": {"metadata.check_at": now() - timedelta(seconds=1)}}
    )


def chunks(files: FileStore, file_id: str) -> int:
    return files.bucket._chunks.count_documents({"files_id": file_id})  # type: ignore[attr-defined]


def test_an_upload_no_job_uses_is_removed_with_its_chunks_once_its_time_is_up(
    files: FileStore, settings: Settings
) -> None:
    file_id = put(files)
    assert chunks(files, file_id) == 2
    make_due(files, file_id)
    assert retention.sweep(settings, files.files.database)["files_removed"] >= 1
    assert files.files.count_documents({"_id": file_id}) == 0
    assert chunks(files, file_id) == 0


def test_a_file_an_unfinished_job_uses_is_kept_without_an_expiry(
    files: FileStore, store: JobStore, settings: Settings
) -> None:
    file_id = put(files)
    job = store.insert(new_job("noop", {}))
    files.attach([file_id], job["_id"])
    make_due(files, file_id)
    retention.sweep(settings, store.db)
    meta = files.get(file_id)["metadata"]
    assert meta["expires_at"] is None and meta["check_at"] > now()


def test_a_file_of_a_finished_job_lives_until_the_job_expires_then_goes(
    files: FileStore, store: JobStore, settings: Settings
) -> None:
    file_id = put(files)
    job = store.insert(new_job("noop", {}))
    files.attach([file_id], job["_id"])
    expires = now() + timedelta(days=3)
    store.jobs.update_one(
        {"_id": job["_id"]}, {"$set": {"status": "succeeded", "expires_at": expires}}
    )
    make_due(files, file_id)
    retention.sweep(settings, store.db)
    meta = files.get(file_id)["metadata"]
    assert meta["expires_at"] == expires and meta["check_at"] > expires
    store.jobs.delete_one({"_id": job["_id"]})  # as the TTL index does
    make_due(files, file_id)
    retention.sweep(settings, store.db)
    assert files.files.count_documents({"_id": file_id}) == 0 and chunks(files, file_id) == 0


def test_an_upload_past_its_limit_leaves_no_chunks_behind(files: FileStore) -> None:
    before = files.bucket._chunks.count_documents({})  # type: ignore[attr-defined]
    with pytest.raises(FileTooLarge):
        files.upload(
            [b"x" * 300_000] * 4,
            name="big",
            content_type="text/plain",
            owner=None,
            max_bytes=1_000_000,
        )
    assert files.bucket._chunks.count_documents({}) == before  # type: ignore[attr-defined]


def test_a_large_upload_and_download_hold_a_few_chunks_in_memory_not_the_file(
    files: FileStore,
) -> None:
    block = bytes(range(256)) * 1024  # 256 KB
    size = 48 * 1024 * 1024  # pymongo's GridIn would hold all of it before its first write
    tracemalloc.start()
    try:
        record = files.upload(
            (block for _ in range(size // len(block))),
            name="big.bin",
            content_type="application/octet-stream",
            owner=None,
            max_bytes=size,
        )
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert sum(len(chunk) for chunk in files.content(record["_id"])) == size
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record["length"] == size
    assert upload_peak < size / 3 and download_peak < size / 3
    files.delete(record["_id"])


@pytest.mark.parametrize("owner", [None, "alice"], ids=["everyone's", "an owner's"])
@pytest.mark.parametrize("kind", [None, "upload"], ids=["every kind", "uploads"])
def test_every_query_of_a_file_list_is_an_index_range_scan(
    files: FileStore, settings: Settings, owner: str | None, kind: str | None
) -> None:
    files.files.delete_many({})
    files.ensure_indexes()  # as the API does at start
    made = [put(files, b"x", owner="alice" if n % 2 else None) for n in range(6)]
    listed = listed_by_index_scans(
        settings.mongo_url,
        files.files,
        lambda db: FileStore(db, timedelta(days=1)).list,
        owner=owner,
        kind=kind,
    )
    assert listed == [f for n, f in enumerate(made) if owner is None or n % 2][::-1]


def test_a_file_from_before_kinds_were_recorded_is_still_listed(files: FileStore) -> None:
    files.files.delete_many({})
    old, new = put(files), put(files)
    files.files.update_one({"_id": old}, {"$unset": {"metadata.kind": ""}})
    assert [f["_id"] for f in files.list().items] == [new, old]
    assert [f["_id"] for f in files.list(kind="upload").items] == [new]
