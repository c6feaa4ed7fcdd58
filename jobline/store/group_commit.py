"""Group commit: inserts made at the same time by one process's threads share one insert_many.

The first thread to arrive writes its document at once. Threads that arrive
while that write is in flight queue up; when it returns, the first of them
writes everything queued by then (up to ``max_batch``) in one ``insert_many``,
and so on. A lone client therefore waits for nothing but its own insert, and
under load each round trip to MongoDB carries many documents: on the embedded
server an insert of one job costs some 3 ms, a job inside an ``insert_many``
well under one. Every caller returns only once its own document is written,
or raises the error its own document met.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

# A batch this large already costs MongoDB about as little per document as it gets.
MAX_BATCH = 64
DUPLICATE_KEY = (11000, 11001)


class _Waiter:
    __slots__ = ("doc", "error", "lead", "written", "woken")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.error: BaseException | None = None
        self.lead = False  # this thread writes the next batch
        self.written = False
        self.woken = threading.Event()


class GroupCommit:
    """Inserts into one collection, batched across the threads of this process."""

    def __init__(self, collection: Collection[Any], max_batch: int = MAX_BATCH) -> None:
        self.collection = collection
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queued: list[_Waiter] = []
        self._busy = False

    def insert(self, doc: Mapping[str, Any]) -> None:
        """Insert ``doc``, alone or with others queued meanwhile; raises what its write raised."""
        me = _Waiter(doc)
        with self._lock:
            self._queued.append(me)
            if not self._busy:
                self._busy = me.lead = True
        while not me.written:
            if me.lead:
                self._write_next()
            else:
                me.woken.wait()
                me.woken.clear()
        if me.error is not None:
            raise me.error

    def _write_next(self) -> None:
        """Write the queued batch (which holds this thread's document), then pass the lead on."""
        with self._lock:
            batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch :]
        try:
            _insert(self.collection, batch)
        finally:
            with self._lock:
                if self._queued:
                    self._queued[0].lead = True
                    self._queued[0].woken.set()
                else:
                    self._busy = False
            for waiter in batch:
                waiter.written = True
                waiter.woken.set()


def _insert(collection: Collection[Any], batch: Sequence[_Waiter]) -> None:
    """One round trip for the batch; each waiter gets its own document's error, if any."""
    try:
        if len(batch) == 1:
            collection.insert_one(batch[0].doc)
        else:
            collection.insert_many([w.doc for w in batch], ordered=False)
    except DuplicateKeyError as exc:
        batch[0].error = exc
    except BulkWriteError as exc:
        for error in exc.details.get("writeErrors", []):
            kind = DuplicateKeyError if error.get("code") in DUPLICATE_KEY else OperationFailure
            batch[error["index"]].error = kind(error.get("errmsg", ""), error.get("code"), error)
        if exc.details.get("writeConcernErrors"):
            for waiter in batch:
                waiter.error = waiter.error or exc
    except Exception as exc:  # a lost connection: nobody's write is known to be done
        for waiter in batch:
            waiter.error = exc
