"""The seed's endpoints: body-mass-index calculations, a view of jobs of type ``bmi``."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_restx import Namespace, Resource

from jobline.api import access, docs
from jobline.api.payloads import (
    JobRequest,
    ListQuery,
    idempotency_key,
    json_body,
    submitted,
    with_query,
)
from jobline.jobs.bmi import BmiParams
from jobline.store.records import Job
from jobline.store.views import job_view

TYPE = "bmi"

ns = Namespace("calculations", description="Body-mass-index calculations (the seed's demo)")
params_model = docs.schema_model(ns, "BmiParams", BmiParams)
job_model = docs.job_model(ns)
page_model = docs.page_model(ns, job_model)


def calculation_view(job: Job) -> dict[str, Any]:
    """A job as the seed's clients expect it: with ``pid`` equal to ``id``."""
    return {"pid": job["_id"], **job_view(job)}


@ns.route("")
class Calculations(Resource):
    @ns.doc("list_calculations", params=docs.LIST_PARAMS)
    @ns.response(200, "Calculations, newest first", page_model)
    @docs.problems(ns, 400, 503)
    @with_query(ListQuery)
    def get(self, q: ListQuery) -> Any:
        """List calculations, newest first, one page at a time."""
        page = access.page(q, type=TYPE)
        return {"items": [calculation_view(j) for j in page.items], "next_cursor": page.next_cursor}

    @docs.submission(ns, "create_calculation", params_model, job_model)
    def post(self) -> Any:
        """Submit a calculation; answers at once with the job to poll."""
        # The same request as POST /jobs {"type": "bmi", "params": body}, errors named as fields.
        req = JobRequest(type=TYPE, params=json_body())
        job, repeat = access.submit(req, idempotency_key(), params_loc=())
        location = url_for("api.calculations_calculation", pid=job["_id"])
        return submitted(calculation_view(job), location, repeat)


@ns.route("/<string:pid>")
@ns.response(404, "No such calculation")
class Calculation(Resource):
    @ns.doc("get_calculation")
    @ns.response(200, "The calculation", job_model)
    @docs.problems(ns, 503)
    def get(self, pid: str) -> Any:
        """A calculation with its status, progress and result."""
        return calculation_view(access.get(pid, TYPE))

    @ns.doc("delete_calculation")
    @ns.response(204, "Deleted (cancelled first if unfinished)")
    @docs.problems(ns, 503)
    def delete(self, pid: str) -> Any:
        """Delete a calculation, cancelling it first if it has not finished."""
        access.delete(pid, TYPE)
        return Response(status=204)


@ns.route("/<string:pid>/cancel")
@ns.response(404, "No such calculation")
class CancelCalculation(Resource):
    @ns.doc("cancel_calculation")
    @ns.response(200, "The calculation, cancelled (or already finished)", job_model)
    @docs.problems(ns, 503)
    def post(self, pid: str) -> Any:
        """Cancel a calculation without deleting it; a running one is stopped."""
        return calculation_view(access.cancel(pid, TYPE))


@ns.route("/<string:pid>/retry")
@ns.response(404, "No such calculation")
class RetryCalculation(Resource):
    @ns.doc("retry_calculation")
    @ns.response(202, "Queued again as a new attempt", job_model)
    @ns.response(409, "Only failed or cancelled calculations can be retried")
    @docs.problems(ns, 503)
    def post(self, pid: str) -> Any:
        """Run a failed or cancelled calculation again."""
        return calculation_view(access.retry(pid, TYPE)), 202
