"""The files a workflow's step jobs read: each must be one of the workflow owner's uploads.

A step's params may name files (``FileRef``), as a job's may. They are
checked at submission for every step whose params are all given (422 naming
``["steps", i, "params", …]``, nothing stored), and again when a step is
released, since a fan-out's items only exist then. A job that reads files
keeps them, as a submitted job does: listed under ``inputs`` in its record,
and attached in GridFS so that they live as long as it does. A step whose
params name no file costs nothing here: no query, no write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ValidationError

from jobline.engine.workflows.spec import Problem, WorkflowInvalid, WorkflowRequest
from jobline.jobs import Catalogue
from jobline.jobs.refs import Loc, file_refs
from jobline.store.files import FileStore
from jobline.store.records import Job

UNKNOWN_FILE = "no file with this id: upload it with POST /api/v1/files"


def refs_of(params: BaseModel) -> list[tuple[Loc, str]]:
    """Where the validated params name a file, and its id."""
    return [(loc, str(ref)) for loc, ref in file_refs(params)]


def unknown(files: FileStore, ids: Iterable[str], owner: str | None) -> set[str]:
    """Which of ``ids`` name no file of ``owner``: one query, none when there are no ids."""
    wanted = set(ids)
    return files.missing(wanted, owner) if wanted else set()


def check_submission(
    files: FileStore, request: WorkflowRequest, catalogue: Catalogue, owner: str | None
) -> None:
    """WorkflowInvalid naming each file a step's own params name that is not the owner's."""
    named = list(_named(request, catalogue))
    if not named:
        return
    missing = unknown(files, (ref for _, ref in named), owner)
    errors: list[Problem] = [
        {"loc": list(loc), "msg": UNKNOWN_FILE, "type": "file_ref"}
        for loc, ref in named
        if ref in missing
    ]
    if errors:
        raise WorkflowInvalid(errors)


def _named(request: WorkflowRequest, catalogue: Catalogue) -> Iterator[tuple[Loc, str]]:
    # A fan-out's params are whole only with each item: checked at release.
    for i, step in enumerate(request.steps):
        if step.for_each is not None or step.type not in catalogue:
            continue
        try:
            params = catalogue.get(step.type).validate_params(step.params)
        except ValidationError:  # spec.check has named it already
            continue
        for loc, ref in refs_of(params):
            yield ("steps", i, "params", *loc), ref


def keep(files: FileStore, jobs: Iterable[Job]) -> None:
    """The input files of these newly inserted step jobs now live as long as each job."""
    for job in jobs:
        if job.get("inputs"):
            files.attach(job["inputs"], job["_id"])
