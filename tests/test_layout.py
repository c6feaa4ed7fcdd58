"""The package's shape: modules of one concept, public names kept where users import them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import jobline
from jobline.core import ids

PACKAGE = Path(jobline.__file__).parent
MAX_MODULE_LINES = 400


@pytest.mark.parametrize(
    "module", sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")), ids=str
)
def test_no_module_of_the_package_is_over_four_hundred_lines(module: str) -> None:
    lines = (PACKAGE / module).read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines: it holds two concepts"


def test_the_public_names_import_from_where_the_readme_says() -> None:
    from jobline.jobs import Context, RetryPolicy, job_type

    assert callable(job_type) and Context and RetryPolicy
    for name in ("Client", "ApiError", "ClientError", "Unreachable", "WaitTimeout"):
        assert isinstance(getattr(jobline, name), type), name
    with pytest.raises(AttributeError):
        _ = jobline.NoSuchThing  # type: ignore[attr-defined]


def test_ids_made_by_one_process_strictly_increase_and_parse_back_to_their_millisecond() -> None:
    made = [ids.new_id() for _ in range(20_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(ids.is_id(i) for i in made[:100])
    assert ids.timestamp_ms(ids.new_id(1_700_000_000_123)) == 1_700_000_000_123


def test_ids_made_in_forked_children_do_not_collide() -> None:
    reader, writer = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # the child writes its ids and leaves at once
            os.close(reader)
            os.write(writer, "".join(ids.new_id() + "\n" for _ in range(500)).encode())
            os._exit(0)
        children.append(pid)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        made = pipe.read().split()
    for pid in children:
        os.waitpid(pid, 0)
    assert len(made) == 1000 and len(set(made)) == 1000
