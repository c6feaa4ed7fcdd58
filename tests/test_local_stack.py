"""Finding the stack `jobline up` runs from its record: what wins, and what is ignored."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from jobline.core import local_stack
from jobline.core.local_stack import LocalStack

STACK_MONGO = "mongodb://127.0.0.1:40001"
STACK_REDIS = "redis://127.0.0.1:40002/0"


@pytest.fixture(autouse=True)
def no_jobline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("JOBLINE_"):
            monkeypatch.delenv(name)


def record(data_dir: Path, pid: int | None = None) -> LocalStack:
    stack = LocalStack(
        pid=os.getpid() if pid is None else pid,
        api_url="http://127.0.0.1:40003",
        flower_url="http://127.0.0.1:40004/",
        mongo_url=STACK_MONGO,
        redis_url=STACK_REDIS,
    )
    local_stack.write(data_dir, stack)
    return stack


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_running_stack_fills_in_the_urls_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(tmp_path)
    monkeypatch.setenv("JOBLINE_MONGO_DB", "other")
    resolved = local_stack.resolve(tmp_path)
    assert resolved.settings.mongo_db == "other"
    assert resolved.settings.mongo_url == STACK_MONGO
    assert resolved.settings.broker == STACK_REDIS
    assert resolved.settings.flower_url == "http://127.0.0.1:40004/"
    assert f"store {STACK_MONGO} (from the `jobline up` on {tmp_path})" in resolved.describe()


def test_an_explicit_url_wins_over_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(tmp_path)
    mine = "mongodb://user:secret@db.internal:27017"
    monkeypatch.setenv("JOBLINE_MONGO_URL", mine)
    resolved = local_stack.resolve(tmp_path)
    assert resolved.settings.mongo_url == mine
    assert resolved.settings.redis_url == STACK_REDIS  # the one left unset still comes from it
    described = resolved.describe()
    assert "(JOBLINE_MONGO_URL)" in described
    assert "secret" not in described


def test_an_explicit_broker_wins_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(tmp_path)
    monkeypatch.setenv("JOBLINE_BROKER_URL", "amqp://127.0.0.1:5672//")
    resolved = local_stack.resolve(tmp_path)
    assert resolved.settings.broker == "amqp://127.0.0.1:5672//"
    assert "broker amqp://127.0.0.1:5672// (JOBLINE_BROKER_URL)" in resolved.describe()


def test_an_empty_variable_counts_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record(tmp_path)
    monkeypatch.setenv("JOBLINE_MONGO_URL", "")
    assert local_stack.resolve(tmp_path).settings.mongo_url == STACK_MONGO


def test_the_record_of_a_stack_whose_process_is_gone_is_ignored(tmp_path: Path) -> None:
    record(tmp_path, pid=dead_pid())
    resolved = local_stack.resolve(tmp_path)
    assert resolved.stack is None
    assert resolved.settings.mongo_url == "mongodb://127.0.0.1:27017"
    assert "(the default)" in resolved.describe()
    assert f"no `jobline up` runs on {tmp_path}" in resolved.unreachable_hint()


@pytest.mark.parametrize("content", ["", "{", "[]", '{"pid": 1}', '{"unknown": true}'])
def test_a_record_that_is_not_one_jobline_wrote_is_ignored(tmp_path: Path, content: str) -> None:
    local_stack.record_path(tmp_path).write_text(content)
    assert local_stack.find(tmp_path) is None


def test_client_commands_use_the_given_url_then_the_stack_then_the_default(tmp_path: Path) -> None:
    assert local_stack.api_url(tmp_path, None) == ("http://127.0.0.1:5000", "the default")
    stack = record(tmp_path)
    assert local_stack.api_url(tmp_path, None)[0] == stack.api_url
    assert local_stack.api_url(tmp_path, "http://api.internal")[0] == "http://api.internal"


def test_a_stack_removes_only_its_own_record(tmp_path: Path) -> None:
    record(tmp_path)
    local_stack.remove(tmp_path, pid=dead_pid())
    assert local_stack.find(tmp_path) is not None
    local_stack.remove(tmp_path, pid=os.getpid())
    assert not local_stack.record_path(tmp_path).exists()
