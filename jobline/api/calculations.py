"""The seed's endpoints: body-mass-index calculations, a view of jobs of type ``bmi``."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Response, url_for
from flask_restx import Namespace, Resource
from pydantic import BaseModel, ConfigDict, Field

from jobline.api import auth, docs
from jobline.api.payloads import job_view, json_body, parse, query
from jobline.api.services import pipeline
from jobline.errors import JobNotFound
from jobline.jobs.bmi import BmiParams
from jobline.store import Job

TYPE = "bmi"

ns = Namespace("calculations", description="Body-mass-index calculations (the seed's demo)")
params_model = docs.schema_model(ns, "BmiParams", BmiParams)
job_model = docs.job_model(ns)
page_model = docs.page_model(ns, job_model)


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = None


def calculation_view(job: Job) -> dict[str, Any]:
    """A job as the seed's clients expect it: with ``pid`` equal to ``id``."""
    return {"pid": job["_id"], **job_view(job)}


def _get(pid: str) -> Job:
    job = pipeline().store.get(pid, owner=auth.scope())
    if job["type"] != TYPE:
        raise JobNotFound(f"no calculation with pid {pid!r}")
    return job


@ns.route("")
class Calculations(Resource):
    @ns.doc("list_calculations", params=docs.LIST_PARAMS)
    @ns.response(200, "Calculations, newest first", page_model)
    def get(self) -> Any:
        """List calculations, newest first, one page at a time."""
        q = query(ListQuery)
        try:
            page = pipeline().store.list(
                limit=q.limit, cursor=q.cursor, type=TYPE, owner=auth.scope()
            )
        except ValueError as exc:
            raise docs.bad_cursor(exc) from None
        return {"items": [calculation_view(j) for j in page.items], "next_cursor": page.next_cursor}

    @ns.doc("create_calculation")
    @ns.expect(params_model)
    @ns.response(202, "Accepted: the job, queued", job_model)
    @ns.response(422, "Invalid input")
    @ns.response(503, "MongoDB or the broker is unavailable, or the queue is full; retry later")
    def post(self) -> Any:
        """Submit a calculation; answers at once with the job to poll."""
        params = parse(BmiParams, json_body())
        job = pipeline().submit(TYPE, params.model_dump(), owner=auth.owner())
        location = url_for("api.calculations_calculation", pid=job["_id"])
        return calculation_view(job), 202, {"Location": location}


@ns.route("/<string:pid>")
@ns.response(404, "No such calculation")
class Calculation(Resource):
    @ns.doc("get_calculation")
    @ns.response(200, "The calculation", job_model)
    def get(self, pid: str) -> Any:
        """A calculation with its status, progress and result."""
        return calculation_view(_get(pid))

    @ns.doc("delete_calculation")
    @ns.response(204, "Deleted (cancelled first if unfinished)")
    def delete(self, pid: str) -> Any:
        """Delete a calculation, cancelling it first if it has not finished."""
        pipeline().delete(_get(pid)["_id"], owner=auth.scope())
        return Response(status=204)


@ns.route("/<string:pid>/cancel")
@ns.response(404, "No such calculation")
class CancelCalculation(Resource):
    @ns.doc("cancel_calculation")
    @ns.response(200, "The calculation, cancelled (or already finished)", job_model)
    def post(self, pid: str) -> Any:
        """Cancel a calculation without deleting it; a running one is stopped."""
        return calculation_view(pipeline().cancel(_get(pid)["_id"], owner=auth.scope()))


@ns.route("/<string:pid>/retry")
@ns.response(404, "No such calculation")
class RetryCalculation(Resource):
    @ns.doc("retry_calculation")
    @ns.response(202, "Queued again as a new attempt", job_model)
    @ns.response(409, "Only failed or cancelled calculations can be retried")
    def post(self, pid: str) -> Any:
        """Run a failed or cancelled calculation again."""
        return calculation_view(pipeline().retry(_get(pid)["_id"], owner=auth.scope())), 202
