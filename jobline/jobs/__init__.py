"""The job catalogue: a job type is a pydantic model, a function and a policy.

A team adds a type by writing one module that calls :func:`job_type`; listing
that module in ``JOBLINE_JOB_MODULES`` makes the API and the workers load it.
Nothing in the API or the worker changes.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from pydantic import BaseModel

from jobline.core.errors import TransientError, UnknownJobType
from jobline.core.settings import Settings
from jobline.jobs.refs import FileAccess, FileRef, NoFiles

__all__ = ["Catalogue", "Context", "FileRef", "JobType", "RetryPolicy", "job_type", "load"]

# Type names appear in URLs, queue routing and metrics labels.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often, and how long to wait between tries."""

    retry_on: tuple[type[BaseException], ...] = (TransientError,)
    max_retries: int = 3
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 600.0
    jitter: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "retry_on": [exc.__name__ for exc in self.retry_on],
            "max_retries": self.max_retries,
            "backoff_seconds": self.backoff_seconds,
            "backoff_max_seconds": self.backoff_max_seconds,
            "jitter": self.jitter,
        }


class ProgressReporter(Protocol):
    def __call__(self, fraction: float, message: str | None = None) -> None: ...


def _ignore_progress(fraction: float, message: str | None = None) -> None:
    """The reporter of a context that runs outside a worker (tests, scripts)."""


@dataclass
class Context:
    """What a running job function is given besides its params."""

    job_id: str
    attempt: int
    settings: Settings
    report: ProgressReporter = field(default=_ignore_progress)
    files: FileAccess = field(default_factory=NoFiles)
    # A workflow step's job: {need_id: result} of the steps it needs (empty outside one).
    inputs: dict[str, Any] = field(default_factory=dict)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; raises JobCancelled if the job was cancelled.

        Cheap to call in a tight loop: the worker stores it at most twice a second.
        """
        self.report(min(max(float(fraction), 0.0), 1.0), message)

    def open(self, ref: str) -> IO[bytes]:
        """An input file (a ``FileRef`` param) as a binary file object reading from GridFS.

        Raises BadJobInput, failing the job with reason ``bad_input``, if the file is gone.
        """
        return self.files.open(ref)

    def save(
        self,
        name: str,
        data: bytes | IO[bytes],
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Store a file this attempt made (bytes or a binary file object), listed on the job.

        A new attempt starts with none; saving a name twice keeps the second.
        """
        return self.files.save(name, data, content_type)


JobFunction = Callable[[Context, Any], Any]


@dataclass(frozen=True)
class JobType:
    """A registered kind of work and the policy it runs under."""

    name: str
    params: type[BaseModel]
    function: JobFunction
    result: type[BaseModel] | None = None
    description: str = ""
    queue: str = DEFAULT_QUEUE
    # Seconds; soft raises inside the job, hard kills its process.
    soft_time_limit: float = 300.0
    time_limit: float = 330.0
    retry: RetryPolicy = RetryPolicy()
    # At most this many jobs of the type run at once across all workers (a licence,
    # an external API's quota); None means no limit.
    max_running: int | None = None
    # Runs only as a workflow step: it reads the results of the steps it needs,
    # so on its own it could only fail. Submitting it as a job is a 422.
    step_only: bool = False
    # The function's only effect is its result: no calls out, no writes of its
    # own (progress, its log and its files go through the worker). A delivery may
    # then run it before its start is written (JOBLINE_CLAIM_DELAY_SECONDS), and a
    # run whose job was cancelled or taken meanwhile is dropped unseen.
    pure: bool = False

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"job type name {self.name!r} must match {NAME.pattern}")
        if not NAME.match(self.queue):
            raise ValueError(f"queue name {self.queue!r} must match {NAME.pattern}")
        if not 0 < self.soft_time_limit < self.time_limit:
            raise ValueError(f"{self.name}: need 0 < soft_time_limit < time_limit")
        if self.max_running is not None and self.max_running < 1:
            raise ValueError(f"{self.name}: max_running must be at least 1, or None")

    def validate_params(self, raw: Any) -> BaseModel:
        """Parse raw params with the type's model; raises pydantic.ValidationError."""
        return self.params.model_validate(raw)

    def run(self, ctx: Context, params: dict[str, Any]) -> Any:
        """Run the function on validated params and return a JSON-ready result.

        A result model may be a RootModel of a list (a step others fan out over).
        """
        value = self.function(ctx, self.params.model_validate(params))
        if value is None:
            return None
        if self.result is not None:
            value = self.result.model_validate(value)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return list(value) if isinstance(value, list) else dict(value)

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
                "retry": self.retry.describe(),
                "max_running": self.max_running,
                "step_only": self.step_only,
                "pure": self.pure,
            },
        }


class Catalogue:
    """The registry of job types, by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._lock = threading.Lock()

    def add(self, job: JobType) -> JobType:
        """Register ``job``; a second, different type under the same name is refused."""
        with self._lock:
            known = self._types.get(job.name)
            if known is not None and _qualname(known.function) != _qualname(job.function):
                raise ValueError(f"job type {job.name!r} is already registered")
            self._types[job.name] = job
        return job

    def get(self, name: str) -> JobType:
        """The type called ``name``; UnknownJobType if there is none."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(
                f"unknown job type {name!r}; known types: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[JobType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return sorted(self._types)


def _qualname(function: JobFunction) -> str:
    # A module imported again (e.g. as __main__) registers the same function anew.
    return f"{function.__module__}.{function.__qualname__}"


catalogue = Catalogue()


def job_type(
    name: str,
    *,
    params: type[BaseModel],
    result: type[BaseModel] | None = None,
    description: str | None = None,
    queue: str = DEFAULT_QUEUE,
    soft_time_limit: float = 300.0,
    time_limit: float = 330.0,
    retry: RetryPolicy | None = None,
    max_running: int | None = None,
    step_only: bool = False,
    pure: bool = False,
) -> Callable[[JobFunction], JobFunction]:
    """Decorator that registers a function as the job type ``name``.

    The description defaults to the function's docstring.
    """

    def register(function: JobFunction) -> JobFunction:
        catalogue.add(
            JobType(
                name=name,
                params=params,
                function=function,
                result=result,
                description=description or (function.__doc__ or "").strip(),
                queue=queue,
                soft_time_limit=soft_time_limit,
                time_limit=time_limit,
                retry=retry or RetryPolicy(),
                max_running=max_running,
                step_only=step_only,
                pure=pure,
            )
        )
        return function

    return register


BUILTIN_MODULES = (
    "jobline.jobs.bmi",
    "jobline.jobs.align",
    "jobline.jobs.sleep",
    "jobline.jobs.noop",
    "jobline.jobs.split_fasta",
    "jobline.jobs.rank_alignments",
)


def load(extra_modules: Iterable[str] = ()) -> Catalogue:
    """Import the built-in job modules and any extra ones; return the catalogue."""
    for module in (*BUILTIN_MODULES, *extra_modules):
        importlib.import_module(module)
    return catalogue
