"""The catalogue: every job type with its params and result schemas and its policy."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace, Resource

from jobline.api.services import pipeline
from jobline.core.errors import UnknownJobType

ns = Namespace("job-types", description="What jobs can be submitted, and how they run")

JOB_TYPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "params_schema": {"type": "object", "description": "JSON Schema of the params"},
        "result_schema": {"type": "object", "x-nullable": True},
        "policy": {
            "type": "object",
            "properties": {
                "queue": {"type": "string"},
                "soft_time_limit": {"type": "number"},
                "time_limit": {"type": "number"},
                "retry": {"type": "object"},
                "max_running": {
                    "type": "integer",
                    "x-nullable": True,
                    "description": "at most this many of the type run at once; null: no limit",
                },
                "step_only": {
                    "type": "boolean",
                    "description": "runs only as a workflow step (submitting it as a job is a 422)",
                },
            },
        },
    },
}
job_type_model = ns.schema_model("JobType", JOB_TYPE_SCHEMA)
job_type_list_model = ns.schema_model(
    "JobTypeList",
    {"type": "object", "properties": {"items": {"type": "array", "items": JOB_TYPE_SCHEMA}}},
)


class JobTypeNotFound(UnknownJobType):
    status = 404


@ns.route("")
class JobTypes(Resource):
    @ns.doc("list_job_types")
    @ns.response(200, "Every job type, by name", job_type_list_model)
    def get(self) -> Any:
        """Every job type with its JSON schemas (params and result) and policy."""
        return {"items": [t.describe() for t in pipeline().catalogue]}


@ns.route("/<string:name>")
@ns.response(404, "No such job type")
class JobType(Resource):
    @ns.doc("get_job_type")
    @ns.response(200, "The job type", job_type_model)
    def get(self, name: str) -> Any:
        """One job type with its JSON schemas and policy."""
        catalogue = pipeline().catalogue
        if name not in catalogue:
            raise JobTypeNotFound(f"no job type {name!r}")
        return catalogue.get(name).describe()
