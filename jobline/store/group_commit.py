"""Group commit: inserts made at the same time by one process's threads share one insert_many.

The first thread to arrive writes its document at once; those that arrive
while that write is in flight share the next ``insert_many`` (core.combining).
Under load each round trip to MongoDB carries many documents: on the embedded
server an insert of one job costs some 3 ms, a job inside an ``insert_many``
well under one. Every caller returns only once its own document is written,
or raises the error its own document met (a taken idempotency key fails its
own submission only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
)

from jobline.core.combining import Combiner

# A batch this large already costs MongoDB about as little per document as it gets.
MAX_BATCH = 64
DUPLICATE_KEY = (11000, 11001)


class GroupCommit:
    """Inserts into one collection, batched across the threads of this process."""

    def __init__(self, collection: Collection[Any], max_batch: int = MAX_BATCH) -> None:
        self._combined: Combiner[Mapping[str, Any]] = Combiner(
            partial(_insert, collection), max_batch
        )

    def insert(self, doc: Mapping[str, Any]) -> None:
        """Insert ``doc``, alone or with others queued meanwhile; raises what its write raised."""
        self._combined.submit(doc)


def _insert(
    collection: Collection[Any], docs: Sequence[Mapping[str, Any]]
) -> list[BaseException | None]:
    """One round trip for the batch; each document's own error, if any."""
    errors: list[BaseException | None] = [None] * len(docs)
    try:
        if len(docs) == 1:
            collection.insert_one(docs[0])
        else:
            collection.insert_many(docs, ordered=False)
    except DuplicateKeyError as exc:
        errors[0] = exc
    except BulkWriteError as exc:
        for error in exc.details.get("writeErrors", []):
            kind = DuplicateKeyError if error.get("code") in DUPLICATE_KEY else OperationFailure
            errors[error["index"]] = kind(error.get("errmsg", ""), error.get("code"), error)
        if exc.details.get("writeConcernErrors"):
            errors = [error or exc for error in errors]
    except ConnectionFailure:
        raise  # the server is away: a failure of the whole call (core.combining)
    except Exception as exc:  # this batch's own (a document the driver cannot encode)
        errors = [exc for _ in docs]
    return errors
