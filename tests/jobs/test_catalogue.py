"""The catalogue: how a job type is declared, checked and described."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from jobline.core.errors import UnknownJobType
from jobline.core.settings import Settings
from jobline.jobs import Catalogue, Context, JobType, RetryPolicy, catalogue, load


class Params(BaseModel):
    n: int = 1


class Result(BaseModel):
    doubled: int


def double(ctx: Context, params: Params) -> dict[str, int]:
    return {"doubled": params.n * 2}


def other(ctx: Context, params: Params) -> None:
    return None


def test_the_built_in_types_are_loaded_and_sorted_by_name() -> None:
    names = load().names()
    assert {"align", "bmi", "noop", "sleep"} <= set(names)
    assert names == sorted(names)
    assert [t.name for t in catalogue] == names


def test_a_type_runs_its_function_and_checks_the_result_with_its_model() -> None:
    job = JobType("double", Params, double, result=Result)
    assert job.run(Context("id", 1, Settings()), {"n": 4}) == {"doubled": 8}
    assert JobType("other", Params, other).run(Context("id", 1, Settings()), {}) is None


def test_the_same_name_cannot_be_registered_for_another_function() -> None:
    registry = Catalogue()
    registry.add(JobType("double", Params, double))
    registry.add(JobType("double", Params, double))  # a module imported twice
    with pytest.raises(ValueError, match="already registered"):
        registry.add(JobType("double", Params, other))


def test_an_unknown_name_raises_and_names_the_known_ones() -> None:
    registry = Catalogue()
    registry.add(JobType("double", Params, double))
    with pytest.raises(UnknownJobType, match="double"):
        registry.get("triple")


@pytest.mark.parametrize(
    "policy",
    [
        {"name": "Has Spaces"},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "9lives"},
        {"queue": "two words"},
        {"soft_time_limit": 10, "time_limit": 10},
        {"soft_time_limit": 0},
    ],
)
def test_badly_declared_types_are_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JobType(**{"name": "ok", "params": Params, "function": double, **policy})


def test_a_type_describes_its_schemas_and_policy() -> None:
    job = JobType(
        "double",
        Params,
        double,
        result=Result,
        queue="cpu",
        soft_time_limit=5,
        time_limit=6,
        retry=RetryPolicy(max_retries=1, backoff_seconds=2),
    )
    described = job.describe()
    assert described["params_schema"]["properties"]["n"]["default"] == 1
    assert described["result_schema"]["required"] == ["doubled"]
    assert described["policy"] == {
        "queue": "cpu",
        "soft_time_limit": 5,
        "time_limit": 6,
        "retry": {
            "retry_on": ["TransientError"],
            "max_retries": 1,
            "backoff_seconds": 2,
            "backoff_max_seconds": 600.0,
            "jitter": True,
        },
        "max_running": None,
        "step_only": False,
        "pure": False,
    }
