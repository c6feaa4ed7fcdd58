"""The job catalogue: a job type is a pydantic model, a function and a policy.

A team adds a type by writing one module that calls :func:`job_type`; listing
that module in ``JOBLINE_JOB_MODULES`` makes the API and the workers load it.
Nothing in the API or the worker changes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from jobline.errors import TransientError, UnknownJobType
from jobline.settings import Settings


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often, and how long to wait between tries."""

    retry_on: tuple[type[BaseException], ...] = (TransientError,)
    max_retries: int = 3
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 600.0
    jitter: bool = True


class ProgressReporter(Protocol):
    def __call__(self, fraction: float, message: str | None = None) -> None: ...


@dataclass
class Context:
    """What a running job function is given besides its params."""

    job_id: str
    attempt: int
    settings: Settings
    report: ProgressReporter = field(default=lambda fraction, message=None: None)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; raises JobCancelled if the job was cancelled."""
        self.report(min(max(float(fraction), 0.0), 1.0), message)


JobFunction = Callable[[Context, Any], Any]


@dataclass(frozen=True)
class JobType:
    """A registered kind of work and the policy it runs under."""

    name: str
    params: type[BaseModel]
    function: JobFunction
    result: type[BaseModel] | None = None
    description: str = ""
    queue: str = "default"
    # Seconds; soft raises inside the job, hard kills its process.
    soft_time_limit: float = 300.0
    time_limit: float = 330.0
    retry: RetryPolicy = RetryPolicy()

    def validate_params(self, raw: Any) -> BaseModel:
        """Parse raw params with the type's model; raises pydantic.ValidationError."""
        return self.params.model_validate(raw)

    def run(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any] | None:
        """Run the function on validated params and return a JSON-ready result."""
        value = self.function(ctx, self.params.model_validate(params))
        if value is None:
            return None
        if self.result is not None:
            value = self.result.model_validate(value)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return dict(value)

    def describe(self) -> dict[str, Any]:
        """The public description served by the API."""
        return {
            "name": self.name,
            "description": self.description,
            "params_schema": self.params.model_json_schema(),
            "result_schema": self.result.model_json_schema() if self.result else None,
            "policy": {
                "queue": self.queue,
                "soft_time_limit": self.soft_time_limit,
                "time_limit": self.time_limit,
                "max_retries": self.retry.max_retries,
                "retry_on": [exc.__name__ for exc in self.retry.retry_on],
                "backoff_seconds": self.retry.backoff_seconds,
                "backoff_max_seconds": self.retry.backoff_max_seconds,
            },
        }


class Catalogue:
    """The registry of job types, by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._lock = threading.Lock()

    def add(self, job: JobType) -> JobType:
        with self._lock:
            self._types[job.name] = job
        return job

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(f"unknown job type {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        return sorted(self._types)


catalogue = Catalogue()


def job_type(
    name: str, *, params: type[BaseModel], **policy: Any
) -> Callable[[JobFunction], JobFunction]:
    """Decorator that registers a function as the job type ``name``."""

    def register(function: JobFunction) -> JobFunction:
        description = policy.pop("description", None) or (function.__doc__ or "").strip()
        catalogue.add(
            JobType(name=name, params=params, function=function, description=description, **policy)
        )
        return function

    return register


BUILTIN_MODULES = ("jobline.jobs.bmi",)


def load(extra_modules: Iterable[str] = ()) -> Catalogue:
    """Import the built-in job modules and any extra ones; return the catalogue."""
    for module in (*BUILTIN_MODULES, *extra_modules):
        importlib.import_module(module)
    return catalogue
