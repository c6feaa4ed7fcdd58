"""The one place the API finds, submits and changes jobs.

Every resource (jobs, calculations) goes through these functions, so a rule
about which jobs a caller may see or touch is written once, here: a key that
is not an admin's reaches only its owner's jobs (auth.scope() is passed to
every store query), and every job submitted records its owner.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobline.api import auth, docs
from jobline.api.payloads import JobRequest, ListQuery, parse
from jobline.api.problems import InvalidInput
from jobline.api.services import files, pipeline
from jobline.core.errors import InvalidTransition, JoblineError, JobNotFound, KeyInUse
from jobline.engine import webhooks
from jobline.engine.destinations import ForbiddenDestination
from jobline.engine.pipeline import Submission
from jobline.jobs import JobType
from jobline.jobs.refs import file_refs
from jobline.store.paging import Page
from jobline.store.records import Job

Loc = tuple[str | int, ...]


def get(job_id: str, type: str | None = None) -> Job:
    """The job with this id (of this type, if given, and the caller's); JobNotFound otherwise."""
    job = pipeline().store.get(job_id, owner=auth.scope())
    if type is not None and job["type"] != type:
        raise JobNotFound(f"no {type} job with id {job_id!r}")
    return job


def page(q: ListQuery, **filters: Any) -> Page:
    """One page of jobs, newest first; 400 for a cursor that is not ours."""
    try:
        return pipeline().store.list(limit=q.limit, cursor=q.cursor, owner=auth.scope(), **filters)
    except ValueError as exc:
        raise docs.bad_cursor(exc) from None


def cancel(job_id: str, type: str | None = None) -> Job:
    return pipeline().cancel(get(job_id, type)["_id"], owner=auth.scope())


def delete(job_id: str, type: str | None = None) -> None:
    pipeline().delete(get(job_id, type)["_id"], owner=auth.scope())


def retry(job_id: str, type: str | None = None) -> Job:
    """Queue a failed or cancelled job again; 409 when a file it reads has been deleted since."""
    job = get(job_id, type)
    if job.get("inputs") and (gone := files().missing(set(job["inputs"]), auth.scope())):
        raise InvalidTransition(
            f"job {job_id} reads {', '.join(sorted(gone))}, deleted since; "
            "submit a new job naming a file that exists"
        )
    return pipeline().retry(job["_id"], owner=auth.scope())


def submission(req: JobRequest, params_loc: Loc = ("params",)) -> Submission:
    """Check a request against the catalogue; InvalidInput naming each bad field."""
    catalogue = pipeline().catalogue
    if req.type not in catalogue:
        known = ", ".join(catalogue.names())
        raise InvalidInput(
            f"unknown job type {req.type!r}",
            [{"loc": ["type"], "msg": f"unknown job type; one of {known}", "type": "job_type"}],
        )
    job_type = catalogue.get(req.type)
    refuse_step_only(job_type)
    params = parse(job_type.params, req.params, prefix=params_loc)
    if req.callback_url:
        try:
            webhooks.check_callback(pipeline().settings, str(req.callback_url))
        except (webhooks.WebhooksNotConfigured, ForbiddenDestination) as exc:
            # Refuses this job alone in a batch.
            raise InvalidInput(str(exc), exc.errors) from None
    extra: dict[str, Any] = {"callback_url": str(req.callback_url)} if req.callback_url else {}
    if inputs := _inputs(params, params_loc):
        extra["inputs"] = inputs
    return Submission(
        req.type, params, req.run_at, req.delay_seconds, req.priority, extra, auth.owner()
    )


def refuse_step_only(job_type: JobType) -> None:
    """422 for a type that only a workflow can run: on its own it could only fail."""
    if job_type.step_only:
        msg = (
            "runs only as a workflow step (it reads the steps it needs): use POST /api/v1/workflows"
        )
        raise InvalidInput(
            f"{job_type.name} {msg}", [{"loc": ["type"], "msg": msg, "type": "step_only"}]
        )


def _inputs(params: Any, params_loc: Loc) -> list[str]:
    """The files the params name, each one of the caller's; InvalidInput naming any other."""
    refs = list(file_refs(params))
    if not refs:
        return []
    missing = files().missing({ref for _, ref in refs}, auth.scope())
    errors = [
        {
            "loc": [*params_loc, *loc],
            "msg": "no file with this id: upload it with POST /api/v1/files",
            "type": "file_ref",
        }
        for loc, ref in refs
        if ref in missing
    ]
    if errors:
        names = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        raise InvalidInput(f"unknown file for: {names}", errors)
    return sorted({str(ref) for _, ref in refs})


def _keep_inputs(job: Job) -> None:
    """The job's input files now live as long as it does."""
    if job.get("inputs"):
        files().attach(job["inputs"], job["_id"])


def submit(req: JobRequest, key: str | None, params_loc: Loc = ("params",)) -> tuple[Job, bool]:
    """Submit one job; returns it and whether it is a repeat of an earlier request.

    With an idempotency key, the same key and the same request give the job the
    first request made; another request under that key is KeyInUse (409). The
    unique index on the key settles two concurrent first requests.
    """
    s = submission(req, params_loc)
    if key is None:
        return _submit(s), False
    # Keys are per owner: one owner's key never finds, or blocks, another's job.
    stored = key if s.owner is None else f"{s.owner}:{key}"
    fingerprint = req.fingerprint()
    store = pipeline().store
    existing = store.find_by_key(stored, s.owner)
    if existing is None:
        extra = {**(s.extra or {}), "idempotency_key": stored, "request_fingerprint": fingerprint}
        try:
            return _submit(replace(s, extra=extra)), False
        except KeyInUse:
            existing = store.find_by_key(stored, s.owner)
        if existing is None:  # the other request's job was refused and taken back
            raise KeyInUse(f"a request with Idempotency-Key {key!r} is in progress; retry")
    if existing.get("request_fingerprint") != fingerprint:
        raise KeyInUse(f"Idempotency-Key {key!r} was used for a different request")
    return existing, True


def _submit(s: Submission) -> Job:
    job = pipeline().submit(
        s.type,
        s.params,
        run_at=s.run_at,
        delay_seconds=s.delay_seconds,
        priority=s.priority,
        extra=s.extra,
        owner=s.owner,
    )
    _keep_inputs(job)
    return job


def submit_batch(items: list[Any]) -> list[Job | JoblineError]:
    """Submit many jobs: in order, each one's job or the error that refused it.

    Valid items are stored a slice of 200 an insert; an invalid one refuses only itself.
    """
    outcomes: list[Job | JoblineError | None] = [None] * len(items)
    accepted: list[tuple[int, Submission]] = []
    for i, raw in enumerate(items):
        try:
            accepted.append((i, submission(parse(JobRequest, raw))))
        except InvalidInput as exc:
            outcomes[i] = exc
    published = pipeline().submit_many([s for _, s in accepted]) if accepted else []
    for (i, _), outcome in zip(accepted, published, strict=True):
        outcomes[i] = outcome
        if not isinstance(outcome, JoblineError):
            _keep_inputs(outcome)
    return [o for o in outcomes if o is not None]
