"""The embedded server's cached index catalogue never hides a change to it.

Each test reads and writes a collection first (so its catalogue is cached),
changes the catalogue, and then checks through another connection that the
server plans and writes by the catalogue as it is now.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError
from secantus.storage import Storage

from jobline.local import index_catalogue


@pytest.fixture
def clients(mongo_url: str) -> Iterator[tuple[MongoClient[Any], MongoClient[Any]]]:
    one: MongoClient[Any] = MongoClient(mongo_url)
    other: MongoClient[Any] = MongoClient(mongo_url)
    yield one, other
    one.close()
    other.close()


@pytest.fixture
def pair(
    clients: tuple[MongoClient[Any], MongoClient[Any]],
) -> Iterator[tuple[Collection[Any], Collection[Any]]]:
    """The same new collection through two connections (two server threads)."""
    name = f"c{uuid.uuid4().hex[:8]}"
    one, other = (client["catalogue_test"][name] for client in clients)
    one.insert_many([{"x": i, "tags": "scalar"} for i in range(20)])
    assert one.count_documents({"x": 3}) == 1 and other.count_documents({"x": 4}) == 1
    yield one, other
    one.drop()


def plan(collection: Collection[Any], query: dict[str, Any]) -> str:
    explained = collection.find(query).explain()
    return str(explained.get("queryPlanner", explained))


def index_stages(node: Any) -> Iterator[dict[str, Any]]:
    """Every stage of an explained plan that reads an index."""
    if isinstance(node, dict):
        if "indexName" in node:
            yield node
        for value in node.values():
            yield from index_stages(value)
    elif isinstance(node, list):
        for value in node:
            yield from index_stages(value)


def test_the_cache_installs_on_the_secantusdb_release_in_use() -> None:
    # Fails loudly if a SecantusDB release no longer has the methods the cache wraps
    # (the launcher would then run the server without it, warning).
    assert index_catalogue.install(Storage)
    assert Storage._jobline_catalogue is not None  # type: ignore[attr-defined]


def test_an_index_made_after_the_catalogue_was_read_is_written_and_used(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    one, other = pair
    one.create_index("x", name="by_x")
    other.insert_many([{"x": 100 + i} for i in range(5)])
    assert "by_x" in plan(other, {"x": 102})
    # Every document is in the index, those written after it was made included.
    assert len(list(other.find({"x": {"$gte": 0}}).hint("by_x"))) == 25


def test_a_unique_index_made_after_the_catalogue_was_read_refuses_a_duplicate(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    one, other = pair
    one.create_index("x", unique=True)
    with pytest.raises(DuplicateKeyError):
        other.insert_one({"x": 7})


def test_a_dropped_index_is_no_longer_used_or_enforced(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    one, other = pair
    one.create_index("x", unique=True, name="unique_x")
    with pytest.raises(DuplicateKeyError):
        other.insert_one({"x": 1})
    one.drop_index("unique_x")
    other.insert_one({"x": 1})
    assert other.count_documents({"x": 1}) == 2
    assert "unique_x" not in plan(other, {"x": 1})


def test_an_index_made_again_with_another_partial_filter_takes_the_new_one(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    # The partial filters and the options are views the cache derives from the
    # catalogue: a write must go by the filter the index has now.
    one, other = pair
    one.create_index("x", name="partial_x", partialFilterExpression={"x": {"$gt": 10}})
    other.insert_one({"x": 50})
    other.update_one({"x": 50}, {"$set": {"x": 51}})
    one.drop_index("partial_x")
    one.create_index("x", name="partial_x", partialFilterExpression={"x": {"$lt": 5}})
    other.insert_one({"x": -5})
    other.update_one({"x": 3}, {"$set": {"x": 4}})
    other.insert_one({"x": 60})
    in_index = sorted(d["x"] for d in other.find({"x": {"$lt": 5}}).hint("partial_x"))
    assert -5 in in_index and 4 in in_index and 60 not in in_index
    assert in_index == sorted(d["x"] for d in other.find({"x": {"$lt": 5}}))


def test_an_index_made_again_sparse_leaves_out_what_lacks_its_field(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    one, other = pair
    one.create_index("y", name="by_y")
    other.insert_one({"y": 1})
    one.drop_index("by_y")
    one.create_index("y", name="by_y", sparse=True)
    other.insert_one({"x": 1000})  # no y: not in a sparse index
    other.insert_one({"y": 2})
    assert sorted(d.get("y") for d in other.find({}).hint("by_y")) == [1, 2]


def test_a_collection_dropped_and_made_again_has_only_its_new_indexes(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    one, other = pair
    one.create_index("x", unique=True)
    one.drop()
    other.insert_many([{"x": 1}, {"x": 1}])
    assert one.count_documents({"x": 1}) == 2


def test_a_renamed_collection_takes_its_indexes_and_leaves_none_behind(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    one, other = pair
    one.create_index("x", unique=True)
    renamed = other.database[f"{other.name}_renamed"]
    other.rename(renamed.name)
    try:
        with pytest.raises(DuplicateKeyError):
            one.database[renamed.name].insert_one({"x": 2})
        other.insert_many([{"x": 2}, {"x": 2}])  # the old name is a new collection
        assert other.count_documents({"x": 2}) == 2
    finally:
        renamed.drop()


def test_an_array_written_after_the_catalogue_was_read_is_planned_as_multikey(
    pair: tuple[Collection[Any], Collection[Any]],
) -> None:
    # An index holding an array is flagged multikey, inside the write's own
    # transaction. A planner that missed the flag would treat the index as
    # holding one entry a document (explain says so).
    one, other = pair
    one.create_index("tags")
    assert other.count_documents({"tags": "scalar"}) == 20
    one.insert_one({"x": -1, "tags": ["red", "blue"]})
    assert len(list(other.find({}).sort("tags", 1))) == 21
    assert not any(
        stage.get("isMultiKey") is False
        for query in ({}, {"tags": "blue"})
        for stage in index_stages(other.find(query).sort("tags", 1).explain())
    )
    assert other.count_documents({"tags": ["red", "blue"]}) == 1
    assert other.count_documents({"tags": "blue"}) == 1


def test_writes_racing_an_index_build_all_reach_the_new_index(
    pair: tuple[Collection[Any], Collection[Any]], mongo_url: str
) -> None:
    one, _ = pair
    writers, each = 3, 150
    started = threading.Barrier(writers + 1)

    def write(n: int) -> None:
        client: MongoClient[Any] = MongoClient(mongo_url)
        collection = client[one.database.name][one.name]
        started.wait()
        for i in range(each):
            collection.insert_one({"x": 1000 + n * each + i})
        client.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    started.wait()
    one.create_index("x", name="by_x")
    for thread in threads:
        thread.join()
    total = one.count_documents({})
    assert total == 20 + writers * each
    assert len(list(one.find({"x": {"$gte": 0}}).hint("by_x"))) == total
