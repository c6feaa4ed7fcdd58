"""Recurring schedules: a job type and params submitted on a cron or an interval."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, url_for
from flask_restx import Namespace, Resource
from pydantic import ValidationError

from jobline.api import access, auth, docs
from jobline.api.payloads import ListQuery, json_body, parse, refuse_idempotency_key, with_query
from jobline.api.problems import InvalidInput
from jobline.api.services import pipeline
from jobline.core.errors import UnknownJobType
from jobline.engine.schedules import Schedules, ScheduleSpec, configure
from jobline.store.schedules import Schedule
from jobline.store.views import iso

ns = Namespace("schedules", description="Recurring schedules that submit ordinary jobs")
spec_model = docs.schema_model(ns, "ScheduleSpec", ScheduleSpec)
schedule_model = ns.schema_model(
    "Schedule",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "type": {"type": "string"},
            "params": {"type": "object"},
            "cron": {"type": "string", "x-nullable": True},
            "interval_seconds": {"type": "integer", "x-nullable": True},
            "callback_url": {"type": "string", "x-nullable": True},
            "created_at": {"type": "string", "format": "date-time"},
            "next_run_at": {"type": "string", "format": "date-time", "x-nullable": True},
            "last_fired_at": {"type": "string", "format": "date-time", "x-nullable": True},
            "last_job_id": {"type": "string", "x-nullable": True},
            "last_error": {"type": "string", "x-nullable": True},
            "fires": {"type": "integer"},
        },
    },
)
page_model = docs.page_model(ns, schedule_model)

EXTENSION = "jobline.schedules"


def schedules() -> Schedules:
    """The app's schedule service, made on first use over the app's pipeline."""
    service = current_app.extensions.get(EXTENSION)
    if service is None:
        p = pipeline()
        configure(p.celery, p.settings)
        service = current_app.extensions[EXTENSION] = Schedules(p)
    return service  # type: ignore[no-any-return]


def schedule_view(record: Schedule, service: Schedules) -> dict[str, Any]:
    """The public representation of a schedule, with when it next fires."""
    return {
        "id": record["_id"],
        "type": record["type"],
        "params": record["params"],
        "cron": record.get("cron"),
        "interval_seconds": record.get("interval_seconds"),
        "callback_url": record.get("callback_url"),
        "created_at": iso(record.get("created_at")),
        "next_run_at": iso(service.next_run_at(record["_id"])),
        "last_fired_at": iso(record.get("last_fired_at")),
        "last_job_id": record.get("last_job_id"),
        "last_error": record.get("last_error"),
        "fires": record.get("fires", 0),
    }


@ns.route("")
class ScheduleList(Resource):
    @ns.doc("list_schedules", params=docs.LIST_PARAMS)
    @ns.response(200, "Schedules, newest first", page_model)
    @docs.problems(ns, 400, 503)
    @with_query(ListQuery)
    def get(self, q: ListQuery) -> Any:
        """List schedules, newest first, one page at a time."""
        service, scope = schedules(), auth.scope()
        return docs.listed(
            lambda: service.list(limit=q.limit, cursor=q.cursor, owner=scope),
            lambda record: schedule_view(record, service),
        )

    @ns.doc("create_schedule")
    @ns.expect(spec_model)
    @ns.response(201, "Created: the schedule and when it first fires", schedule_model)
    @ns.response(422, "Invalid input: unknown type, bad params, bad cron or interval")
    @ns.response(503, "MongoDB or Redis is unavailable; retry later")
    @docs.problems(ns, 400, 415)
    def post(self) -> Any:
        """Create a schedule submitting a job of ``type`` with ``params`` on a cron or interval."""
        refuse_idempotency_key("schedules")
        spec = parse(ScheduleSpec, json_body())
        service = schedules()
        try:
            access.refuse_step_only(service.pipeline.catalogue.get(spec.type))
            record = service.create(spec, owner=auth.owner())
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc, ("params",)) from None
        except UnknownJobType as exc:
            known = ", ".join(service.pipeline.catalogue.names())
            msg = f"unknown job type; one of {known}"
            raise InvalidInput(
                str(exc), [{"loc": ["type"], "msg": msg, "type": "job_type"}]
            ) from None
        location = url_for("api.schedules_schedule_item", schedule_id=record["_id"])
        return schedule_view(record, service), 201, {"Location": location}


@ns.route("/<string:schedule_id>")
@ns.response(404, "No such schedule")
class ScheduleItem(Resource):
    @ns.doc("get_schedule")
    @ns.response(200, "The schedule", schedule_model)
    @docs.problems(ns, 503)
    def get(self, schedule_id: str) -> Any:
        """A schedule, with when it next fires and the last job it submitted."""
        service = schedules()
        return schedule_view(service.get(schedule_id, owner=auth.scope()), service)

    @ns.doc("delete_schedule")
    @ns.response(204, "Deleted: it fires no more (jobs it submitted are kept)")
    @docs.problems(ns, 503)
    def delete(self, schedule_id: str) -> Any:
        """Delete a schedule; jobs it already submitted are kept."""
        schedules().delete(schedule_id, owner=auth.scope())
        return Response(status=204)
