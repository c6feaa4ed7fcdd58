"""A running job's files: its inputs read from GridFS, and the files it makes stored there.

``JobFiles`` is the ``FileAccess`` a worker gives the job's ``Context``. A new
attempt starts by removing the files an earlier attempt made (a job that has
none pays nothing); a failed attempt's files stay listed for inspection until
the job runs again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any

from jobline.core.errors import BadJobInput, FileNotFound, JobCancelled
from jobline.core.settings import Settings
from jobline.store.files import FileStore, valid_content_type, valid_name
from jobline.store.records import Job
from jobline.store.views import output_view

CHUNK_BYTES = 1024 * 1024


def _chunks(data: bytes | IO[bytes]) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
        return
    while chunk := data.read(CHUNK_BYTES):
        yield chunk


class JobFiles:
    """Files for one attempt of one job, in GridFS."""

    def __init__(
        self,
        settings: Settings,
        db: Any,
        job: Job,
        before_write: Callable[[], bool] | None = None,
    ) -> None:
        # Called before a file is saved; False: the attempt lost its job.
        self.before_write = before_write
        self.settings = settings
        self.db = db
        self.job = job
        self.attempt: int = job["attempts"]
        self._store: FileStore | None = None

    @property
    def store(self) -> FileStore:
        # Made on first use: a job that touches no file pays nothing for it.
        if self._store is None:
            self._store = FileStore.of(self.settings, self.db)
        return self._store

    @classmethod
    def for_attempt(
        cls,
        settings: Settings,
        db: Any,
        job: Job,
        before_write: Callable[[], bool] | None = None,
    ) -> JobFiles:
        """The files of a claimed attempt, once an earlier attempt's outputs are gone."""
        files = cls(settings, db, job, before_write)
        if job.get("files"):
            files.store.replace_earlier(job, files.attempt)
        return files

    def open(self, ref: str) -> IO[bytes]:
        try:
            return self.store.open(ref)  # type: ignore[return-value]
        except FileNotFound:
            raise BadJobInput(f"input file {ref} no longer exists") from None

    def save(self, name: str, data: bytes | IO[bytes], content_type: str) -> dict[str, Any]:
        if self.before_write is not None and not self.before_write():
            raise JobCancelled(self.job["_id"])
        entry = self.store.save_output(
            self.job,
            self.attempt,
            valid_name(name),
            _chunks(data),
            valid_content_type(content_type),
            self.settings.max_file_bytes,
        )
        if entry is None:  # cancelled, or handed to another worker meanwhile
            raise JobCancelled(self.job["_id"])
        return output_view(self.job["_id"], entry)
