"""A cache of the embedded server's index catalogue, kept as long as nothing changes it.

SecantusDB reads a collection's index catalogue from WiredTiger every time it
plans a query or writes a document, several times for one update (the plan,
the partial filters, the multikey flags, each index's options). With the
indexes of jobline's jobs that was a third of the server's CPU for a job's
writes (docs/performance.md, "The store's floor"). This keeps each
collection's catalogue as stored bytes, decoded afresh for every caller as
before, and forgets all of it whenever it may have changed:

- while and after any method that writes the catalogue runs (index and
  collection DDL);
- when a write flags an index multikey (its first array value). That flag is
  written inside the write's transaction, so the writer's next request
  forgets again, once that transaction has committed;
- a catalogue read is kept only if nothing changed since the reading thread's
  snapshot began. SecantusDB keeps a thread's WiredTiger snapshot until the
  server releases it before the thread's next request, so a read may see an
  older catalogue than the last change.

The views SecantusDB derives from the catalogue for every write (the indexes
with their flags, the partial filters, each index's options, the multikey
names) are kept the same way, and each caller gets containers of its own, as
from SecantusDB (their innermost values, key patterns' fields and filters'
operands, are shared: SecantusDB only reads them).

Only the embedded server jobline starts uses this; a real mongod caches its
own catalogue. It relies on SecantusDB's internals (the version range is
pinned), and installs nothing, with a warning, where they are not as expected.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import bson
from secantus import storage as secantus_storage

log = logging.getLogger(__name__)

# Every Storage method that writes the index catalogue table, but the multikey flag's.
CHANGES = (
    "create_index",
    "drop_index",
    "drop_all_indexes",
    "set_index_expiry",
    "set_index_options",
    "drop_collection",
    "drop_database",
    "rename_collection",
    "_recover_pending_drops_locked",
)
# Called for every document written; it writes the catalogue only for a new flag.
MARK_MULTIKEY = "_maybe_mark_multikey"
# What SecantusDB derives from the catalogue, several times a write, and how each
# caller is given a copy of its own.
DERIVED: dict[str, Callable[[Any], Any]] = {
    "_all_indexes": lambda found: [(n, dict(key), *flags) for n, key, *flags in found],
    "_partial_filters": lambda found: {name: dict(pf) for name, pf in found.items()},
    "_index_options_map": lambda found: {name: dict(opts) for name, opts in found.items()},
    "_multikey_index_names": set,
}
NEEDED = (
    *CHANGES,
    *DERIVED,
    MARK_MULTIKEY,
    "_iter_indexes",
    "release_thread_snapshot",
    "_cursor",
)

Entries = tuple[tuple[str, bytes], ...]
T = TypeVar("T")


class Catalogue:
    """Each collection's index entries, as stored, and the views derived from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._changing = 0
        self._entries: dict[tuple[str, ...], Any] = {}
        self._thread = threading.local()

    def get(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        found = self._entries.get(key)
        if found is not None:
            return found
        since = getattr(self._thread, "generation", None)
        found = read()
        with self._lock:
            if since == self._generation and not self._changing:
                self._entries[key] = found
        return found

    def change_begins(self) -> None:
        with self._lock:
            self._changing += 1
            self._generation += 1
            self._entries.clear()

    def change_ends(self) -> None:
        with self._lock:
            self._changing -= 1
            self._generation += 1
            self._entries.clear()

    def changed_uncommitted(self) -> None:
        """A change in the thread's open transaction: forget now, and again once it commits."""
        self.change_begins()
        self.change_ends()
        self._thread.uncommitted = True

    def snapshot_released(self, in_user_transaction: bool) -> None:
        """The thread's next reads see every change committed so far."""
        if getattr(self._thread, "uncommitted", False):
            self._thread.uncommitted = False
            self.change_begins()
            self.change_ends()
        # A user transaction keeps its snapshot: nothing the thread reads is kept.
        self._thread.generation = None if in_user_transaction else self._generation


def install(storage_class: Any) -> bool:
    """Make ``storage_class`` (SecantusDB's Storage) read its catalogue through a cache."""
    missing = [name for name in NEEDED if not callable(getattr(storage_class, name, None))]
    if missing:
        log.warning("index catalogue cache not installed: Storage lacks %s", ", ".join(missing))
        return False
    if getattr(storage_class, "_jobline_catalogue", None) is None:
        catalogue = Catalogue()
        storage_class._jobline_catalogue = catalogue
        for name in CHANGES:
            setattr(storage_class, name, _changing(catalogue, getattr(storage_class, name)))
        mark = _marking(catalogue, getattr(storage_class, MARK_MULTIKEY))
        setattr(storage_class, MARK_MULTIKEY, mark)
        storage_class._iter_indexes = _iter_indexes(catalogue)
        for name, copy in DERIVED.items():
            setattr(storage_class, name, _derived(catalogue, getattr(storage_class, name), copy))
        release = _released(catalogue, storage_class.release_thread_snapshot)
        storage_class.release_thread_snapshot = release
    return True


def _read_entries(storage: Any, db: str, coll: str) -> Entries:
    """SecantusDB's own ``_iter_indexes``, keeping the stored bytes."""
    cursor = storage._cursor(secantus_storage._IDX_TABLE)
    cursor.set_key(db, coll, "")
    rc = cursor.search_near()
    if rc == secantus_storage.wt.WT_NOTFOUND or (rc < 0 and cursor.next() != 0):
        return ()
    found = []
    while True:
        key = cursor.get_key()
        if key[0] != db or key[1] != coll:
            break
        found.append((key[2], bytes(cursor.get_value())))
        if cursor.next() != 0:
            break
    return tuple(found)


def _iter_indexes(catalogue: Catalogue) -> Callable[..., Iterator[tuple[str, Any, Any]]]:
    def iter_indexes(self: Any, db: str, coll: str) -> Iterator[tuple[str, Any, Any]]:
        for name, blob in catalogue.get((db, coll), lambda: _read_entries(self, db, coll)):
            payload = bson.decode(blob)  # each caller gets dicts of its own, as before
            yield name, payload.get("key", {}), payload.get("options", {})

    return iter_indexes


def _derived(
    catalogue: Catalogue, method: Callable[[Any, str, str], T], copy: Callable[[T], T]
) -> Callable[[Any, str, str], T]:
    @functools.wraps(method)
    def derive(self: Any, db: str, coll: str) -> T:
        return copy(catalogue.get((method.__name__, db, coll), lambda: method(self, db, coll)))

    return derive


def _changing(catalogue: Catalogue, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def change(self: Any, *args: Any, **kwargs: Any) -> Any:
        catalogue.change_begins()
        try:
            return method(self, *args, **kwargs)
        finally:
            catalogue.change_ends()

    return change


def _marking(catalogue: Catalogue, method: Callable[..., set[str]]) -> Callable[..., set[str]]:
    @functools.wraps(method)
    def mark(self: Any, db: str, coll: str, doc: Any, indexes: Any, already: set[str]) -> set[str]:
        before = len(already)
        flagged = method(self, db, coll, doc, indexes, already)  # grows ``already`` in place
        if len(flagged) > before:
            catalogue.changed_uncommitted()
        return flagged

    return mark


def _released(catalogue: Catalogue, release: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(release)
    def release_thread_snapshot(self: Any) -> None:
        release(self)
        catalogue.snapshot_released(getattr(self._tls, "user_txn", None) is not None)

    return release_thread_snapshot
