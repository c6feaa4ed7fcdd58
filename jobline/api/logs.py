"""A job's log: the lines its attempts wrote, in order, in cursor pages."""

from __future__ import annotations

from typing import Annotated, Any

from flask_restx import Namespace, Resource
from pydantic import BaseModel, ConfigDict, Field

from jobline.api import access, docs
from jobline.api.payloads import with_query
from jobline.api.problems import BadRequest
from jobline.api.services import logs
from jobline.store.records import TERMINAL, Status

# Mounted at the API root: its route sits beside the job it belongs to.
ns = Namespace("logs", description="What a job wrote through logging and print", path="/")

MAX_PAGE = 1000

line_model = ns.schema_model(
    "LogLine",
    {
        "type": "object",
        "properties": {
            "time": {"type": "string", "format": "date-time"},
            "attempt": {"type": "integer"},
            "level": {"type": "string", "description": "INFO, WARNING, ERROR, CRITICAL"},
            "stream": {"type": "string", "description": "log, stdout, stderr, or jobline"},
            "message": {"type": "string"},
        },
    },
)
page_model = ns.schema_model(
    "LogPage",
    {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/definitions/LogLine"}},
            "truncated": {"type": "boolean", "description": "lines were dropped past the cap"},
            "next_cursor": {"type": "string", "x-nullable": True},
        },
    },
)


class LogQuery(BaseModel):
    """GET /jobs/<id>/logs: one attempt or all, and a page of lines."""

    model_config = ConfigDict(extra="forbid")

    attempt: Annotated[int, Field(ge=1, le=100_000)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 200
    cursor: Annotated[str, Field(max_length=200)] | None = None


@ns.route("/jobs/<string:job_id>/logs")
@ns.response(404, "No such job")
class JobLogs(Resource):
    @ns.doc(
        "job_logs",
        params={
            "attempt": {"description": "only this attempt's lines", "type": "integer"},
            "limit": {"description": f"lines a page, 1 to {MAX_PAGE}", "type": "integer"},
            "cursor": {"description": "next_cursor of the previous page", "type": "string"},
        },
    )
    @ns.response(200, "Lines in the order written", page_model)
    @docs.problems(ns, 400, 503)
    @with_query(LogQuery)
    def get(self, job_id: str, q: LogQuery) -> Any:
        """The lines the job wrote, attempt by attempt, in the order written.

        `next_cursor` is null on the last page of a finished job; while the job
        runs it is always given, so a follower asks again from where it was.
        """
        job = access.get(job_id)
        try:
            page = logs().page(
                job["_id"],
                job.get("attempts", 0),
                finished=Status(job["status"]) in TERMINAL,
                attempt=q.attempt,
                cursor=q.cursor,
                limit=q.limit,
            )
        except ValueError as exc:
            raise BadRequest(f"{exc}: pass the next_cursor of a previous page unchanged") from None
        return {"items": page.items, "truncated": page.truncated, "next_cursor": page.next_cursor}
