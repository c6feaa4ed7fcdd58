"""Jobs of any type: submit one or many, list with filters, read, cancel, retry, delete."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_restx import Namespace, Resource

from jobline.api import access, docs
from jobline.api.payloads import (
    MAX_BATCH,
    BatchRequest,
    JobListQuery,
    JobRequest,
    idempotency_key,
    json_body,
    parse,
    refuse_idempotency_key,
    submitted,
    with_query,
)
from jobline.core.errors import JoblineError
from jobline.store.views import job_view

ns = Namespace("jobs", description="Jobs of any type in the catalogue (see /job-types)")
request_model = ns.schema_model("JobRequest", {})  # filled from the catalogue by the app
job_model = docs.job_model(ns)
page_model = docs.page_model(ns, job_model)
batch_model = docs.batch_model(ns)
batch_result_model = docs.batch_result_model(ns)


def location(job_id: str) -> str:
    return url_for("api.jobs_job", job_id=job_id)


@ns.route("")
class Jobs(Resource):
    @ns.doc("list_jobs", params={**docs.LIST_PARAMS, **docs.JOB_FILTERS})
    @ns.response(200, "Jobs, newest first", page_model)
    @docs.problems(ns, 400, 503)
    @with_query(JobListQuery)
    def get(self, q: JobListQuery) -> Any:
        """List jobs newest first, filtered by type, status and creation time."""
        page = access.page(
            q,
            type=q.type,
            status=q.status,
            created_after=q.created_after,
            created_before=q.created_before,
        )
        return {"items": [job_view(j) for j in page.items], "next_cursor": page.next_cursor}

    @docs.submission(ns, "submit_job", request_model, job_model)
    def post(self) -> Any:
        """Submit a job of any type; answers at once with the job to poll."""
        req = parse(JobRequest, json_body())
        job, repeat = access.submit(req, idempotency_key())
        return submitted(job_view(job), location(job["_id"]), repeat)


@ns.route(":batch")
class Batch(Resource):
    @ns.doc("submit_jobs")
    @ns.expect(batch_model)
    @ns.response(200, "Each job's id (status 202) or its problem, in order", batch_result_model)
    @ns.response(422, f"Not a list of 1 to {MAX_BATCH} jobs")
    @docs.problems(ns, 400, 415, 503)
    def post(self) -> Any:
        """Submit up to 1,000 jobs at once; each is accepted or refused on its own.

        Answers 200 whenever the batch itself is well formed: look at each
        result's ``status`` (202 accepted, 422 invalid, 503 not published).
        """
        refuse_idempotency_key("batches")
        batch = parse(BatchRequest, json_body())
        outcomes = access.submit_batch(batch.jobs)
        results = [_batch_result(i, outcome) for i, outcome in enumerate(outcomes)]
        refused = sum(1 for r in results if r["status"] != 202)
        return {"accepted": len(results) - refused, "refused": refused, "results": results}


def _batch_result(index: int, outcome: dict[str, Any] | JoblineError) -> dict[str, Any]:
    if isinstance(outcome, JoblineError):
        return {
            "index": index,
            "status": outcome.status,
            "title": outcome.title,
            "detail": str(outcome),
            "errors": getattr(outcome, "errors", []),
        }
    return {
        "index": index,
        "status": 202,
        "id": outcome["_id"],
        "location": location(outcome["_id"]),
    }


@ns.route("/<string:job_id>")
@ns.response(404, "No such job")
class Job(Resource):
    @ns.doc("get_job")
    @ns.response(200, "The job", job_model)
    @docs.problems(ns, 503)
    def get(self, job_id: str) -> Any:
        """A job with its status, progress and result."""
        return job_view(access.get(job_id))

    @ns.doc("delete_job")
    @ns.response(204, "Deleted (cancelled first if unfinished)")
    @docs.problems(ns, 503)
    def delete(self, job_id: str) -> Any:
        """Delete a job, cancelling it first if it has not finished."""
        access.delete(job_id)
        return Response(status=204)


@ns.route("/<string:job_id>/cancel")
@ns.response(404, "No such job")
class CancelJob(Resource):
    @ns.doc("cancel_job")
    @ns.response(200, "The job, cancelled (or already finished)", job_model)
    @docs.problems(ns, 503)
    def post(self, job_id: str) -> Any:
        """Cancel a job without deleting it; a running one is stopped."""
        return job_view(access.cancel(job_id))


@ns.route("/<string:job_id>/retry")
@ns.response(404, "No such job")
class RetryJob(Resource):
    @ns.doc("retry_job")
    @ns.response(202, "Queued again as a new attempt", job_model)
    @ns.response(409, "Only failed or cancelled jobs can be retried")
    @docs.problems(ns, 503)
    def post(self, job_id: str) -> Any:
        """Run a failed or cancelled job again."""
        job = access.retry(job_id)
        return job_view(job), 202, {"Location": location(job["_id"])}
