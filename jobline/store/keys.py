"""API keys: created once, stored only as a SHA-256 hash, looked up by that hash.

A key is ``jl_`` followed by 43 random URL-safe characters (256 bits), so a fast
unsalted hash is enough: nobody can guess their way to a stored hash, and the
lookup stays one ``find_one`` by ``_id``. The key's name is its identity: jobs
are owned by the name, and a revoked name's new key sees its old jobs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from jobline.core.errors import JoblineError
from jobline.store.mongo import unavailable_as_error
from jobline.store.records import now

KEY_PREFIX = "jl_"
# Shown by `jobline keys list` so a key can be recognised; not enough to use it.
SHOWN_CHARS = 8
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class KeyConflict(JoblineError):
    """A key operation that cannot be done (duplicate name, unknown name)."""

    status = 409
    title = "Key conflict"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the key's name, and whether it may see every job."""

    name: str
    admin: bool = False


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyStore:
    """The ``api_keys`` collection: every query on keys lives here."""

    def __init__(self, db: Database[Any]) -> None:
        self.keys: Collection[Any] = db["api_keys"]

    @unavailable_as_error
    def ensure_indexes(self) -> None:
        self.keys.create_index([("name", ASCENDING)])

    @unavailable_as_error
    def create(self, name: str, *, admin: bool = False) -> str:
        """Store a new key for ``name`` and return it; the only time it is ever seen."""
        if self.keys.find_one({"name": name, "revoked_at": None}) is not None:
            raise KeyConflict(f"{name!r} already has a key; revoke it first")
        key = new_key()
        self.keys.insert_one(
            {
                "_id": digest(key),
                "name": name,
                "prefix": key[: len(KEY_PREFIX) + SHOWN_CHARS],
                "admin": admin,
                "created_at": now(),
                "revoked_at": None,
            }
        )
        return key

    @unavailable_as_error
    def lookup(self, key: str) -> Principal | None:
        """The principal a presented key stands for, or None if unknown or revoked."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        found = self.keys.find_one({"_id": digest(key), "revoked_at": None})
        if found is None:
            return None
        return Principal(found["name"], bool(found.get("admin")))

    @unavailable_as_error
    def named(self, name: str) -> bool:
        """Whether ``name`` has, or had, a key: owners are key names."""
        return self.keys.find_one({"name": name}, {"_id": 1}) is not None

    @unavailable_as_error
    def list(self) -> list[dict[str, Any]]:
        """Every key's name, shown prefix, admin flag and dates; never the key or its hash."""
        fields = {"_id": 0, "name": 1, "prefix": 1, "admin": 1, "created_at": 1, "revoked_at": 1}
        return list(self.keys.find({}, fields).sort("created_at", ASCENDING))

    @unavailable_as_error
    def revoke(self, name: str) -> int:
        """Revoke every live key of ``name``; how many were revoked."""
        revoked_at: datetime = now()
        result = self.keys.update_many(
            {"name": name, "revoked_at": None}, {"$set": {"revoked_at": revoked_at}}
        )
        return result.modified_count
