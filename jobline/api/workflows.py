"""Workflows: steps run as ordinary jobs, each once the steps it needs have succeeded."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Response, url_for
from flask_restx import Namespace, Resource
from pydantic import Field

from jobline.api import auth, docs
from jobline.api.payloads import ListQuery, json_body, parse, refuse_idempotency_key, with_query
from jobline.api.services import pipeline
from jobline.engine.workflows import operations
from jobline.engine.workflows.progress import Progression
from jobline.engine.workflows.spec import WorkflowRequest
from jobline.store.views import workflow_view
from jobline.store.workflows import FlowStatus, Workflow

ns = Namespace("workflows", description="Multi-step pipelines: chains, fan-out and fan-in")
request_model = docs.schema_model(ns, "WorkflowRequest", WorkflowRequest)
workflow_model = ns.schema_model("Workflow", docs.WORKFLOW_SCHEMA)
page_model = docs.page_model(ns, workflow_model)
STATUS_FILTER = {
    "status": {
        "description": "only workflows in this status",
        "type": "string",
        "enum": [str(s) for s in FlowStatus],
    }
}


class WorkflowListQuery(ListQuery):
    """GET /workflows: a page, optionally of one status."""

    status: Annotated[FlowStatus, Field()] | None = None


def progression() -> Progression:
    return pipeline().progression()


def view(workflow: Workflow) -> dict[str, Any]:
    """The workflow as the API shows it, with its steps' params, jobs and results."""
    return workflow_view(workflow, progression().flows.runs_of(workflow["_id"]))


def location(workflow_id: str) -> str:
    return url_for("api.workflows_workflow_item", workflow_id=workflow_id)


@ns.route("")
class WorkflowList(Resource):
    @ns.doc("list_workflows", params={**docs.LIST_PARAMS, **STATUS_FILTER})
    @ns.response(200, "Workflows, newest first", page_model)
    @docs.problems(ns, 400, 503)
    @with_query(WorkflowListQuery)
    def get(self, q: WorkflowListQuery) -> Any:
        """List workflows newest first, optionally of one status."""
        status = str(q.status) if q.status is not None else None
        flows, scope = progression().flows, auth.scope()
        return docs.listed(
            lambda: flows.list(limit=q.limit, cursor=q.cursor, status=status, owner=scope), view
        )

    @ns.doc("submit_workflow")
    @ns.expect(request_model)
    @ns.response(202, "Accepted: the workflow, its first steps queued", workflow_model)
    @ns.response(422, "Invalid workflow; each bad place named (['steps', 2, 'needs'])")
    @ns.response(503, "MongoDB or the broker is unavailable; nothing was stored")
    @docs.problems(ns, 400, 415)
    def post(self) -> Any:
        """Submit a workflow: steps, what each needs, and what a step fans out over."""
        refuse_idempotency_key("workflows")
        request = parse(WorkflowRequest, json_body())
        workflow = operations.submit(progression(), request, owner=auth.owner())
        return view(workflow), 202, {"Location": location(workflow["_id"])}


@ns.route("/<string:workflow_id>")
@ns.response(404, "No such workflow")
class WorkflowItem(Resource):
    @ns.doc("get_workflow")
    @ns.response(200, "The workflow and its steps", workflow_model)
    @docs.problems(ns, 503)
    def get(self, workflow_id: str) -> Any:
        """A workflow, with each step's status, jobs, result and error."""
        return view(progression().flows.get(workflow_id, owner=auth.scope()))

    @ns.doc("delete_workflow")
    @ns.response(204, "Deleted (cancelled first if unfinished); its jobs are kept")
    @docs.problems(ns, 503)
    def delete(self, workflow_id: str) -> Any:
        """Delete a workflow, cancelling it first if it has not finished."""
        operations.delete(progression(), workflow_id, owner=auth.scope())
        return Response(status=204)


@ns.route("/<string:workflow_id>/cancel")
@ns.response(404, "No such workflow")
class CancelWorkflow(Resource):
    @ns.doc("cancel_workflow")
    @ns.response(200, "The workflow, cancelled (or already finished)", workflow_model)
    @docs.problems(ns, 503)
    def post(self, workflow_id: str) -> Any:
        """Cancel a workflow: running step jobs are stopped, waiting steps never start."""
        return view(operations.cancel(progression(), workflow_id, owner=auth.scope()))


@ns.route("/<string:workflow_id>/retry")
@ns.response(404, "No such workflow")
class RetryWorkflow(Resource):
    @ns.doc("retry_workflow")
    @ns.response(202, "Running again: failed, cancelled and skipped steps", workflow_model)
    @ns.response(409, "Only failed or cancelled workflows can be retried")
    @docs.problems(ns, 503)
    def post(self, workflow_id: str) -> Any:
        """Run a failed or cancelled workflow's unfinished steps again; succeeded ones are kept."""
        workflow = operations.retry(progression(), workflow_id, owner=auth.scope())
        return view(workflow), 202, {"Location": location(workflow["_id"])}
