"""Files in GridFS on the job store's database: uploads, and the files jobs make.

A file's GridFS record (``fs.files``) carries, under ``metadata``, its owner,
content type and SHA-256, which jobs it belongs to, and when the sweeper
should next ask whether those jobs still exist (``check_at``, see
``lifetimes``). GridFS's chunks cannot follow a TTL index, so files are
removed by the sweeper, chunks and all, through ``GridFSBucket.delete``. An
upload no job refers to is kept for ``JOBLINE_FILE_TTL_SECONDS``; a file a job
uses or makes lives as long as that job. The files a job made are also listed
on its record (``files``), which is what the job's view shows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from bson import Binary
from gridfs import GridFSBucket, GridOut, NoFile
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from jobline.core import ids
from jobline.core.errors import FileInUse, FileNotFound, FileTooLarge
from jobline.core.settings import Settings
from jobline.store.lifetimes import verdict
from jobline.store.mongo import journaled, unavailable_as_error
from jobline.store.paging import Page, windowed
from jobline.store.records import UNFINISHED, Status, now
from jobline.store.views import iso

MAX_NAME = 255
# type/subtype and optional parameters, as a Content-Type header carries them.
CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+(\s*;[ -~]*)?$")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
SWEEP_BATCH = 100
# GridFS's default chunk size; chunks are written (and read) this many at a time, so an
# upload or download holds about 4 MB however large the file.
CHUNK_BYTES = 255 * 1024
CHUNKS_A_WRITE = 16
# What a file is: one a caller uploaded, or one a job made (ctx.save).
UPLOAD, OUTPUT = "upload", "output"
KINDS = (UPLOAD, OUTPUT)


def valid_name(name: str) -> str:
    """``name`` if it can name a file; ValueError saying why not."""
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"a file name has 1 to {MAX_NAME} characters")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError("a file name may not contain path separators or be . or ..")
    if not name.isprintable():
        raise ValueError("a file name may not contain control characters")
    return name


def valid_content_type(value: str | None) -> str:
    """A media type (``type/subtype``), octet-stream when not given; ValueError otherwise."""
    if not value:
        return DEFAULT_CONTENT_TYPE
    if len(value) > 200 or not CONTENT_TYPE.match(value):
        raise ValueError(f"{value[:50]!r} is not a media type (type/subtype)")
    return value


def file_view(record: dict[str, Any]) -> dict[str, Any]:
    """The public shape of an uploaded file."""
    meta = record.get("metadata") or {}
    return {
        "id": record["_id"],
        "name": record["filename"],
        "size": record["length"],
        "kind": meta.get("kind"),
        "content_type": meta.get("content_type", DEFAULT_CONTENT_TYPE),
        "sha256": meta.get("sha256"),
        "created_at": iso(record.get("uploadDate")),
        "expires_at": iso(meta.get("expires_at")),
    }


class FileStore:
    """GridFS on the jobs' database, and the ``files`` list of a job record."""

    def __init__(self, db: Database[Any], ttl: timedelta) -> None:
        self.bucket = GridFSBucket(db)
        self.files: Collection[Any] = db["fs.files"]
        self.chunks: Collection[Any] = db["fs.chunks"]
        self.jobs: Collection[Any] = db["jobs"]
        self.ttl = ttl

    @classmethod
    def of(cls, settings: Settings, db: Database[Any]) -> FileStore:
        """GridFS on the jobs' database, keeping unused uploads for JOBLINE_FILE_TTL_SECONDS."""
        return cls(db, timedelta(seconds=settings.file_ttl_seconds))

    @unavailable_as_error
    def ensure_indexes(self) -> None:
        # GridFS's own two (GridIn would make them on first use; upload writes chunks itself).
        self.chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        self.files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
        self.files.create_index([("metadata.check_at", ASCENDING)])
        # Lists (see list): everyone's files of a kind, and an owner's, newest first.
        self.files.create_index([("metadata.kind", ASCENDING), ("_id", DESCENDING)])
        self.files.create_index(
            [("metadata.owner", ASCENDING), ("metadata.kind", ASCENDING), ("_id", DESCENDING)]
        )

    @unavailable_as_error
    def upload(
        self,
        chunks: Iterable[bytes],
        *,
        name: str,
        content_type: str,
        owner: str | None,
        max_bytes: int,
        jobs: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Stream ``chunks`` into a new file and return its record.

        Written as GridFS lays a file out (``fs.chunks``, then its ``fs.files``
        record), but a few chunks at a time: pymongo's GridIn keeps up to 48 MB
        of chunks in memory before its first write. Past ``max_bytes`` the
        chunks written are removed and FileTooLarge raised; so too if
        ``chunks`` raises (a body cut short).
        """
        file_id, at = ids.new_id(), now()
        digest, size, number = hashlib.sha256(), 0, 0
        buffer, pending = bytearray(), []
        try:
            for piece in chunks:
                size += len(piece)
                if size > max_bytes:
                    raise FileTooLarge(f"files are limited to {max_bytes} bytes")
                digest.update(piece)
                buffer += piece
                while len(buffer) >= CHUNK_BYTES:
                    pending.append(self._chunk(file_id, number, buffer[:CHUNK_BYTES]))
                    del buffer[:CHUNK_BYTES]
                    number += 1
                if len(pending) >= CHUNKS_A_WRITE:
                    self.chunks.insert_many(pending)
                    pending = []
            if buffer:
                pending.append(self._chunk(file_id, number, buffer))
            if pending:
                self.chunks.insert_many(pending)
            # Journaled, and after every chunk: the 201 promises the whole file survives a crash.
            journaled(self.files).insert_one(
                {
                    "_id": file_id,
                    "length": size,
                    "chunkSize": CHUNK_BYTES,
                    "uploadDate": at,
                    "filename": name,
                    "metadata": {
                        "owner": owner,
                        # A file given to jobs when made is one a job made; the rest, uploads.
                        "kind": OUTPUT if jobs else UPLOAD,
                        "content_type": content_type,
                        "sha256": digest.hexdigest(),
                        "jobs": list(jobs),
                        "expires_at": None if jobs else at + self.ttl,
                        "check_at": at + self.ttl,
                    },
                }
            )
        except BaseException:
            self.chunks.delete_many({"files_id": file_id})
            raise
        return self.get(file_id)

    @staticmethod
    def _chunk(file_id: str, number: int, data: bytes | bytearray) -> dict[str, Any]:
        return {"files_id": file_id, "n": number, "data": Binary(bytes(data))}

    @unavailable_as_error
    def content(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes, chunk by chunk, a few chunks read at a time."""
        found = self.chunks.find({"files_id": file_id}, {"data": 1}).sort("n", ASCENDING)
        for chunk in found.batch_size(CHUNKS_A_WRITE):
            yield bytes(chunk["data"])

    @unavailable_as_error
    def get(self, file_id: str, owner: str | None = None) -> dict[str, Any]:
        """The file's record (one of ``owner``'s, unless None); FileNotFound otherwise."""
        query: dict[str, Any] = {"_id": file_id}
        if owner is not None:
            query["metadata.owner"] = owner
        found = self.files.find_one(query) if ids.is_id(file_id) else None
        if found is None:
            raise FileNotFound(f"no file with id {file_id!r}")
        return found

    @unavailable_as_error
    def list(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
        kind: str | None = None,
    ) -> Page:
        """Files newest first (``owner``'s unless None; of one ``kind`` if given), a page at
        a time; ValueError for a bad cursor.

        Read a kind at a time, in time windows, as the jobs' lists read a status at a
        time: SecantusDB scans the whole collection for a sort on _id or a range on it
        alone (20,000 files: a third of a second a page), and a kind is the equality
        every file has for an index to begin with.
        """
        kinds = [kind] if kind is not None else [*KINDS, None]  # None: made before kinds
        mine = {} if owner is None else {"metadata.owner": owner}
        partitions = [{**mine, "metadata.kind": k} for k in kinds]
        return windowed(self.files, partitions, limit, cursor, int(now().timestamp() * 1000))

    @unavailable_as_error
    def open(self, file_id: str) -> GridOut:
        """The file's bytes as a binary file object reading from GridFS."""
        try:
            return self.bucket.open_download_stream(file_id)
        except NoFile:
            raise FileNotFound(f"no file with id {file_id!r}") from None

    @unavailable_as_error
    def delete(self, file_id: str, owner: str | None = None) -> None:
        """Remove a file; FileInUse while an unfinished job uses it."""
        record = self.get(file_id, owner)
        using = (record.get("metadata") or {}).get("jobs") or []
        unfinished = {"_id": {"$in": using}, "status": {"$in": [str(s) for s in UNFINISHED]}}
        if using and self.jobs.find_one(unfinished, {"_id": 1}) is not None:
            raise FileInUse(f"file {file_id} is an input of a job that has not finished")
        self._remove([file_id])

    @unavailable_as_error
    def missing(self, file_ids: Iterable[str], owner: str | None) -> set[str]:
        """Which of ``file_ids`` name no file of ``owner`` (any owner's when None)."""
        wanted = {f for f in file_ids if ids.is_id(f)}
        query: dict[str, Any] = {"_id": {"$in": sorted(wanted)}}
        if owner is not None:
            query["metadata.owner"] = owner
        found = {r["_id"] for r in self.files.find(query, {"_id": 1})} if wanted else set()
        return set(file_ids) - found

    @unavailable_as_error
    def attach(self, file_ids: Sequence[str], job_id: str) -> None:
        """Keep these files as long as the job lives: they are its inputs."""
        if file_ids:
            self.files.update_many(
                {"_id": {"$in": list(file_ids)}},
                {
                    "$addToSet": {"metadata.jobs": job_id},
                    "$set": {"metadata.expires_at": None, "metadata.check_at": now() + self.ttl},
                },
            )

    # -- the files a job makes ---------------------------------------------------

    @unavailable_as_error
    def save_output(
        self,
        job: dict[str, Any],
        attempt: int,
        name: str,
        chunks: Iterable[bytes],
        content_type: str,
        max_bytes: int,
    ) -> dict[str, Any] | None:
        """Store a file the running ``attempt`` of ``job`` made, listed on the job by name.

        A second file of the same name replaces the first. None (and nothing
        kept) if the attempt no longer owns the job.
        """
        record = self.upload(
            chunks,
            name=name,
            content_type=content_type,
            owner=job.get("owner"),
            max_bytes=max_bytes,
            jobs=[job["_id"]],
        )
        entry = {
            "name": name,
            "file_id": record["_id"],
            "size": record["length"],
            "content_type": content_type,
            "sha256": record["metadata"]["sha256"],
            "attempt": attempt,
        }
        running = {"_id": job["_id"], "status": str(Status.RUNNING), "attempts": attempt}
        # find_one_and_update scans the whole collection on SecantusDB: read, then write.
        current = self.jobs.find_one(running, {"files": 1})
        listed = (current or {}).get("files") or []
        kept = [f for f in listed if f["name"] != name]
        listed_now = current is not None and bool(
            self.jobs.update_one(running, {"$set": {"files": [*kept, entry]}}).matched_count
        )
        if not listed_now:
            self._remove([record["_id"]])
            return None
        self._remove([f["file_id"] for f in listed if f["name"] == name])
        return entry

    @unavailable_as_error
    def replace_earlier(self, job: dict[str, Any], attempt: int) -> None:
        """A new attempt starts with no files: remove those an earlier attempt made."""
        earlier = [f for f in job.get("files") or [] if f.get("attempt", 0) < attempt]
        if not earlier:
            return
        self.jobs.update_one(
            {"_id": job["_id"], "attempts": attempt},
            {"$pull": {"files": {"attempt": {"$lt": attempt}}}},
        )
        self._remove([f["file_id"] for f in earlier])

    @unavailable_as_error
    def forget_outputs(self, job: dict[str, Any]) -> None:
        """Remove the files a deleted job made."""
        self._remove([f["file_id"] for f in job.get("files") or []])

    def _remove(self, file_ids: Iterable[str]) -> None:
        for file_id in file_ids:
            try:
                self.bucket.delete(file_id)
            except NoFile:
                continue  # already gone: another sweeper, or a delete in between

    @unavailable_as_error
    def sweep(self) -> int:
        """Remove files whose jobs are gone (or unused uploads past their time); how many."""
        at = now()
        due = list(self.files.find({"metadata.check_at": {"$lte": at}}).limit(SWEEP_BATCH))
        removed = []
        for record in due:
            found = verdict(self.jobs, record["metadata"].get("jobs") or [], at, self.ttl)
            if not found.keep:
                removed.append(record["_id"])
                continue
            self.files.update_one(
                {"_id": record["_id"]},
                {
                    "$set": {
                        "metadata.expires_at": found.expires_at,
                        "metadata.check_at": found.check_at,
                    }
                },
            )
        self._remove(removed)
        return len(removed)
