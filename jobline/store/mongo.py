"""Reaching MongoDB: one client per process, and a lost connection as StoreUnavailable."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from types import GeneratorType
from typing import Any, ParamSpec, TypeVar, cast

from pymongo import MongoClient, WriteConcern
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.errors import ConnectionFailure, OperationFailure

from jobline.core.errors import StoreUnavailable
from jobline.core.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


# pymongo's default heartbeat (10 s): checking more seldom than that gains nothing.
# MongoDB's code for a dropped index that is gone.
INDEX_NOT_FOUND = 27
MAX_HEARTBEAT_MS = 10_000
MIN_HEARTBEAT_MS = 500  # pymongo's floor


def connect(settings: Settings) -> MongoClient[dict[str, Any]]:
    """A client that gives up within the connect timeout, so callers can answer 503.

    A server that stops answering without closing its connections (hung, stopped,
    cut off by a network partition) is noticed by the client's heartbeat, which then
    cancels the operations waiting on it: beating once a connect timeout bounds that
    wait by about twice the timeout, not the default heartbeat's 10 s and more.
    An option the URL sets itself (``?serverSelectionTimeoutMS=…``) wins over these.
    """
    timeout_ms = int(settings.connect_timeout_seconds * 1000)
    defaults: dict[str, Any] = {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "heartbeatFrequencyMS": min(max(timeout_ms, MIN_HEARTBEAT_MS), MAX_HEARTBEAT_MS),
        "appname": "jobline",
    }
    named = settings.mongo_url_options
    chosen = {name: value for name, value in defaults.items() if name.lower() not in named}
    return MongoClient(settings.mongo_url, tz_aware=True, **chosen)


def journaled(collection: Collection[Any]) -> Collection[Any]:
    """``collection`` whose writes are acknowledged once in the server's journal.

    For what a client is told was accepted (a 202, a 201): with MongoDB's default
    an acknowledged write can still be lost to a crash of the server within its
    journal's commit interval (SecantusDB lost every write of its last 50 ms or so).
    The claim and the outcome need not wait: one lost is redone from the lease.
    """
    concern = dict(collection.write_concern.document)
    if concern.get("fsync"):  # the URL asked for more than the journal already
        return collection
    return collection.with_options(write_concern=WriteConcern(**{**concern, "j": True}))


def unavailable_as_error(method: Callable[P, R]) -> Callable[P, R]:
    """Turn a lost MongoDB connection into StoreUnavailable.

    Also while a cursor or generator the method returns is read: a query runs
    when it is first read, after the method has returned.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            found = method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc
        if isinstance(found, Cursor | GeneratorType):
            return cast(R, _read(found))
        return found

    return wrapper


def _read(found: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from found
    except ConnectionFailure as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: ConnectionFailure) -> StoreUnavailable:
    # pymongo's own name for an operation its heartbeat gave up on is private.
    return StoreUnavailable(f"MongoDB unreachable: {type(exc).__name__.lstrip('_')}")


def mine(query: dict[str, Any], owner: str | None) -> dict[str, Any]:
    """``query`` narrowed to one owner's jobs; None means every job (admins, auth off)."""
    if owner is not None:
        query["owner"] = owner
    return query


def drop_index(collection: Collection[Any], name: str) -> None:
    """Drop an index by name; one gone already (another process starting) is fine."""
    try:
        collection.drop_index(name)
    except OperationFailure as exc:
        if exc.code != INDEX_NOT_FOUND:
            raise
