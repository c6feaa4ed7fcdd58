"""OpenAPI models shared by the resources, derived from the pydantic models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_restx import Namespace
from flask_restx.model import SchemaModel
from pydantic import BaseModel

from jobline.api.payloads import IDEMPOTENCY_HEADER, MAX_BATCH, JobRequest
from jobline.api.problems import BadRequest
from jobline.jobs import Catalogue
from jobline.store.paging import Page
from jobline.store.records import Status

REF = "#/definitions/"

LIST_PARAMS = {
    "limit": {"description": "page size, 1 to 500", "type": "integer", "default": 50},
    "cursor": {"description": "next_cursor of the previous page", "type": "string"},
}

JOB_FILTERS = {
    "type": {"description": "only jobs of this type", "type": "string"},
    "status": {
        "description": "only jobs in this status",
        "type": "string",
        "enum": [str(s) for s in Status],
    },
    "created_after": {
        "description": "only jobs created after this time (ISO 8601 with a zone)",
        "type": "string",
        "format": "date-time",
    },
    "created_before": {
        "description": "only jobs created before this time (ISO 8601 with a zone)",
        "type": "string",
        "format": "date-time",
    },
}

_NULLABLE_STRING = {"type": "string", "x-nullable": True}

JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [str(s) for s in Status],
        },
        "params": {"type": "object"},
        "result": {"x-nullable": True, "description": "any JSON (a list for split_fasta)"},
        "error": {"type": "object", "x-nullable": True},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "progress_message": _NULLABLE_STRING,
        "attempts": {"type": "integer"},
        "queue": {"type": "string"},
        "priority": {"type": "integer", "x-nullable": True},
        "run_at": {**_NULLABLE_STRING, "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {**_NULLABLE_STRING, "format": "date-time"},
        "finished_at": {**_NULLABLE_STRING, "format": "date-time"},
        "expires_at": {**_NULLABLE_STRING, "format": "date-time"},
        "callback_url": {**_NULLABLE_STRING, "format": "uri"},
        "schedule_id": {**_NULLABLE_STRING, "description": "the schedule that submitted it"},
        "workflow_id": {**_NULLABLE_STRING, "description": "the workflow it is a step job of"},
        "step": {**_NULLABLE_STRING, "description": "the id of its step in that workflow"},
        "files": {
            "type": "array",
            "description": "the files the job made (the latest attempt's)",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "id": {
                        "type": "string",
                        "format": "uuid",
                        "description": "the file's id: a FileRef another job can read",
                    },
                    "size": {"type": "integer"},
                    "content_type": {"type": "string"},
                    "sha256": {"type": "string"},
                    "url": {"type": "string", "description": "GET it to download the file"},
                },
            },
        },
        "held_reason": {
            **_NULLABLE_STRING,
            "description": "why a waiting job is held back (an owner's or a type's limit)",
        },
        "webhook": {
            "type": "object",
            "x-nullable": True,
            "description": "delivery of the job to callback_url once it ended",
            "properties": {
                "attempts": {"type": "integer"},
                "last_status": {"type": "integer", "x-nullable": True},
                "delivered_at": {**_NULLABLE_STRING, "format": "date-time"},
                "last_error": _NULLABLE_STRING,
            },
        },
    },
}


_WEBHOOK_SCHEMA = JOB_SCHEMA["properties"]["webhook"]
_STEP_STATUSES = ["waiting", "queued", "running", "succeeded", "failed", "cancelled", "skipped"]
WORKFLOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
        },
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string"},
                    "status": {"type": "string", "enum": _STEP_STATUSES},
                    "needs": {"type": "array", "items": {"type": "string"}},
                    "for_each": _NULLABLE_STRING,
                    "params": {"type": "object"},
                    "job_ids": {"type": "array", "items": {"type": "string"}},
                    "done": {"type": "integer", "description": "jobs of the step succeeded"},
                    "total": {"type": "integer", "description": "jobs the step runs"},
                    "run": {"type": "integer", "description": "0, then 1 more per retry"},
                    "result": {"x-nullable": True},
                    "error": {"type": "object", "x-nullable": True},
                    "started_at": {**_NULLABLE_STRING, "format": "date-time"},
                    "finished_at": {**_NULLABLE_STRING, "format": "date-time"},
                },
            },
        },
        "error": {"type": "object", "x-nullable": True},
        "owner": _NULLABLE_STRING,
        "priority": {"type": "integer", "x-nullable": True},
        "callback_url": {**_NULLABLE_STRING, "format": "uri"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {**_NULLABLE_STRING, "format": "date-time"},
        "finished_at": {**_NULLABLE_STRING, "format": "date-time"},
        "expires_at": {**_NULLABLE_STRING, "format": "date-time"},
        "webhook": _WEBHOOK_SCHEMA,
    },
}


def _swagger2(schema: Any) -> Any:
    """Pydantic writes JSON Schema 2020-12; rewrite what Swagger 2.0 cannot say.

    Exclusive bounds become booleans, ``const`` an enum of one, and ``X | None``
    (an anyOf with null) becomes X marked ``x-nullable``, without a null default.
    """
    if isinstance(schema, list):
        return [_swagger2(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default" and value is None:
            continue  # Swagger 2.0 has no null; x-nullable says it instead
        elif key == "const":
            out["enum"] = [value]
        elif key == "anyOf" and {"type": "null"} in value:
            others = [_swagger2(v) for v in value if v != {"type": "null"}]
            single = others[0] if len(others) == 1 else {"x-anyOf": others}
            # Swagger 2.0 ignores siblings of $ref, so wrap it.
            out.update({"allOf": [single]} if "$ref" in single else single)
            out["x-nullable"] = True
        elif key == "anyOf":
            out["x-anyOf"] = _swagger2(value)
        else:
            out[key] = _swagger2(value)
    return out


def swagger_definitions(model: type[BaseModel], name: str) -> dict[str, dict[str, Any]]:
    """Swagger 2.0 definitions for ``model`` (as ``name``) and the models it nests.

    Nested models are named after ``name`` (``align.Scoring``), so two job types
    may each have a model of the same name.
    """
    prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
    schema = model.model_json_schema(ref_template=REF + prefix + "{model}")
    nested = schema.pop("$defs", {})
    return {name: _swagger2(schema)} | {prefix + n: _swagger2(d) for n, d in nested.items()}


def schema_model(ns: Namespace, name: str, model: type[BaseModel]) -> SchemaModel:
    """A Swagger model generated from a pydantic model, so the docs cannot drift."""
    definitions = swagger_definitions(model, name)
    for nested, schema in definitions.items():
        if nested != name:
            ns.schema_model(nested, schema)
    return ns.schema_model(name, definitions[name])


def describe_catalogue(ns: Namespace, request: SchemaModel, catalogue: Catalogue) -> None:
    """Document each job type's request (``<type>.request``) and params in ``ns``.

    Swagger 2.0 has no oneOf: the generic ``request`` model lists the type names
    and points at every per-type request model in ``x-oneOf``.
    """
    for job_type in catalogue:
        params = schema_model(ns, f"{job_type.name}.params", job_type.params)
        if job_type.result is not None:
            schema_model(ns, f"{job_type.name}.result", job_type.result)
        ns.schema_model(
            f"{job_type.name}.request",
            _request_schema(job_type.description, [job_type.name], {"$ref": REF + params.name}),
        )
    request._schema = _request_schema(
        "A job of any type; see the <type>.request models for each type's params.",
        catalogue.names(),
        {"type": "object", "description": "checked by the type's params model"},
    )
    request._schema["x-oneOf"] = [{"$ref": f"{REF}{name}.request"} for name in catalogue.names()]


def _request_schema(description: str, types: list[str], params: dict[str, Any]) -> dict[str, Any]:
    schema = _swagger2(JobRequest.model_json_schema())
    schema["description"] = description
    schema["properties"]["type"] = {"type": "string", "enum": types}
    schema["properties"]["params"] = params
    schema["required"] = ["type", "params"]
    schema.pop("title", None)
    return schema


IDEMPOTENCY_DOC = {
    IDEMPOTENCY_HEADER: {
        "in": "header",
        "type": "string",
        "description": "Repeat a request safely: the same key and body return the first job "
        "(200); the same key with another body is 409.",
    }
}

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# Problems a handler answers with, beyond those every operation gives
# (swagger.EVERY_OPERATION); the spec shows each as a Problem.
PROBLEMS = {
    400: "Malformed: a body that is not JSON or names a key twice, a bad header or cursor",
    415: "The body is not application/json",
    503: "MongoDB or the broker is unavailable, or the queue is full; see Retry-After",
}


def problems(ns: Namespace, *codes: int) -> Decorator:
    """Document the problems ``codes`` an operation answers with, in their usual words."""
    return ns.doc(responses={str(code): PROBLEMS[code] for code in codes})  # type: ignore[no-any-return]


def submission(ns: Namespace, name: str, body: SchemaModel, job: SchemaModel) -> Decorator:
    """The documentation of a POST that submits one job (jobs and calculations)."""
    docs = [
        ns.doc(name, params=IDEMPOTENCY_DOC),
        ns.expect(body),
        ns.response(202, "Accepted: the job, queued or scheduled", job),
        ns.response(200, "The job an earlier request with this Idempotency-Key made", job),
        ns.response(409, "The Idempotency-Key was used for a different request"),
        ns.response(422, "Invalid input; each bad field named"),
        problems(ns, 400, 415, 503),
    ]

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        for doc in docs:
            method = doc(method)
        return method

    return decorate


def job_model(ns: Namespace) -> SchemaModel:
    return ns.schema_model("Job", JOB_SCHEMA)


def page_model(ns: Namespace, item: SchemaModel) -> SchemaModel:
    """``{items, next_cursor}`` of ``item``, named after it (``JobPage``, ``FilePage``…)."""
    return ns.schema_model(
        f"{item.name}Page",
        {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": f"#/definitions/{item.name}"}},
                "next_cursor": _NULLABLE_STRING,
            },
        },
    )


def batch_model(ns: Namespace) -> SchemaModel:
    return ns.schema_model(
        "JobBatch",
        {
            "type": "object",
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                    "items": {"$ref": REF + "JobRequest"},
                }
            },
        },
    )


def batch_result_model(ns: Namespace) -> SchemaModel:
    return ns.schema_model(
        "JobBatchResult",
        {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer"},
                "refused": {"type": "integer"},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "status": {"type": "integer", "description": "202, 422 or 503"},
                            "id": {"type": "string", "description": "when accepted"},
                            "location": {"type": "string", "description": "when accepted"},
                            "title": {"type": "string", "description": "when refused"},
                            "detail": {"type": "string", "description": "when refused"},
                            "errors": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    )


def bad_cursor(exc: Exception) -> BadRequest:
    return BadRequest(f"{exc}: pass the next_cursor of a previous page unchanged")


def listed(read: Callable[[], Page], view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The answer of a list: the page ``read`` gets, each item in its ``view``; 400 for a
    cursor that is not ours."""
    try:
        page = read()
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return {"items": [view(item) for item in page.items], "next_cursor": page.next_cursor}
