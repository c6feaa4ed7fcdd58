"""The MongoDB job store: jobs in one collection, and every query and change of them.

``JobStore`` is the one object the engine and the API hold; its parts live by
concept: ``transitions`` (the named status changes), ``lists`` (pages of
jobs), ``recovery`` (what the sweeper reads and hands on), and ``collection``
(the connection, retention and lookups by id).
"""

from __future__ import annotations

from jobline.store.lists import LIST_INDEXES, Lists
from jobline.store.mongo import unavailable_as_error
from jobline.store.recovery import Recovery
from jobline.store.transitions import Transitions


class JobStore(Transitions, Lists, Recovery):
    """Jobs in one MongoDB collection, and the named transitions between states."""

    @unavailable_as_error
    def ensure_indexes(self) -> None:
        """Create the indexes listing, filtering and the sweeper rely on."""
        # _id is a UUIDv7, so {_id: -1} is newest first.
        for keys in LIST_INDEXES:
            self.jobs.create_index(keys)
        # Finished jobs carry expires_at when retention is configured.
        self.jobs.create_index("expires_at", expireAfterSeconds=0)
        # Two concurrent requests with one Idempotency-Key: the second insert fails.
        self.jobs.create_index("idempotency_key", unique=True, sparse=True)
