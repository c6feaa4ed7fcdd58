"""The MongoDB job store: jobs in one collection, and every query and change of them.

``JobStore`` is the one object the engine and the API hold; its parts live by
concept: ``transitions`` (the named status changes), ``lists`` (pages of
jobs), ``recovery`` (what the sweeper reads and hands on), and ``collection``
(the connection, retention and lookups by id).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import OperationFailure

from jobline.store.lists import LIST_INDEXES, OWNER_INDEXES, RETIRED_INDEXES, Lists
from jobline.store.mongo import drop_index, unavailable_as_error
from jobline.store.paging import EPOCH
from jobline.store.recovery import Recovery
from jobline.store.transitions import Transitions

# MongoDB's codes for an index made meanwhile.
INDEX_CONFLICTS = (85, 86)


class JobStore(Transitions, Lists, Recovery):
    """Jobs in one MongoDB collection, and the named transitions between states."""

    @unavailable_as_error
    def ensure_indexes(self) -> None:
        """Create the indexes listing, filtering and the sweeper rely on."""
        # _id is a UUIDv7, so {_id: -1} is newest first. An owner's lists exist only
        # with auth on; turned off, the owner indexes of before stay until dropped.
        for keys, options in LIST_INDEXES + (OWNER_INDEXES if self.owner_lists else ()):
            self._ensure_index(keys, **options)
        for name in set(RETIRED_INDEXES) & set(self.jobs.index_information()):
            self._drop_index(name)
        # Finished jobs carry expires_at when retention is configured; the index
        # holds only those, so no write of an unfinished job touches it.
        self._ensure_index(
            [("expires_at", ASCENDING)],
            expireAfterSeconds=0,
            partialFilterExpression={"expires_at": {"$gt": EPOCH}},
        )
        # Two concurrent requests with one Idempotency-Key: the second insert fails.
        self.jobs.create_index("idempotency_key", unique=True, sparse=True)

    def _drop_index(self, name: str) -> None:
        drop_index(self.jobs, name)

    def _ensure_index(self, keys: list[tuple[str, int]], **options: Any) -> None:
        """Create an index, replacing one on the same keys made with other options."""
        wanted = options.get("partialFilterExpression")
        for name, info in self.jobs.index_information().items():
            if info["key"] == keys and info.get("partialFilterExpression") != wanted:
                self._drop_index(name)  # an older deployment's, kept whole before
        try:
            self.jobs.create_index(keys, **options)
        except OperationFailure as exc:
            # Processes starting together: another made it first, perhaps as the old one.
            if exc.code not in INDEX_CONFLICTS:
                raise
