"""Reading requests and writing jobs: strict JSON in, one job representation out."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from flask import current_app, request
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from werkzeug.exceptions import RequestEntityTooLarge, RequestURITooLarge

from jobline.api.problems import BadRequest, InvalidInput, UnsupportedMediaType
from jobline.api.services import pipeline
from jobline.core.errors import FileTooLarge
from jobline.engine.delays import When
from jobline.engine.webhooks import CallbackUrl
from jobline.store.records import Status

MAX_BATCH = 1000
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255

M = TypeVar("M", bound=BaseModel)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


class DuplicateKey(ValueError):
    """A JSON object names a key twice: which value the client meant is not ours to guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the cheap check; the loop runs only for a refusal
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


# Endpoints whose body is a file, limited by JOBLINE_MAX_FILE_BYTES (plus room for
# the multipart framing) instead of the JSON limit.
FILE_ENDPOINTS = frozenset({"api.files_upload"})
MULTIPART_FRAMING_BYTES = 64 * 1024


# The longest URI (path and query string) the API reads. gunicorn refuses a request
# line past its own limit before the app sees it, with an HTML page and none of
# the security headers: `jobline api` raises that limit to gunicorn's maximum
# (GUNICORN_REQUEST_LINE), so that a URI between this and that gets a 414 problem.
MAX_URI_BYTES = 4096
GUNICORN_REQUEST_LINE = 8190


def refuse_long_uri() -> None:
    """414 for a URI past MAX_URI_BYTES, as a problem document like every other refusal."""
    uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    if len(uri) > MAX_URI_BYTES:
        raise RequestURITooLarge(f"URIs are limited to {MAX_URI_BYTES} bytes")


def refuse_oversized() -> None:
    """413 for a declared body past the limit, even on endpoints that never read one."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.endpoint in FILE_ENDPOINTS:
        max_file = pipeline().settings.max_file_bytes
        limit = request.max_content_length = max_file + MULTIPART_FRAMING_BYTES
        if request.content_length is not None and request.content_length > limit:
            raise FileTooLarge(f"files are limited to {max_file} bytes")
    if request.content_length is not None and limit and request.content_length > limit:
        raise RequestEntityTooLarge(f"bodies are limited to {limit} bytes")


def json_body() -> Any:
    """The request body as JSON; 415 for other media types, 400 for malformed JSON.

    A key given twice in one object is a 400 too: the json module would keep the
    last value, and ``{"type": "bmi", "type": "noop"}`` run what nobody meant.
    """
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit:
        # A chunked body: Werkzeug stops reading at the limit without a word, and
        # what it read may still parse. One byte more says whether there was more.
        request.max_content_length = limit + 1
    raw = request.get_data(cache=True)  # raises 413 past a declared Content-Length
    if limit and len(raw) > limit:
        raise RequestEntityTooLarge(f"bodies are limited to {limit} bytes")
    try:
        return json.loads(raw, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        raise BadRequest(f"body names the key {str(exc)!r} twice in one object") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None


def parse(model: type[M], data: Any, *, prefix: tuple[str | int, ...] = ()) -> M:
    """Validate ``data`` with ``model``; InvalidInput naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, prefix) from None


def query(model: type[M]) -> M:
    """Validate the query string; a parameter given twice is refused, not guessed."""
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        args[key] = values[0] if len(values) == 1 else values
    return parse(model, args, prefix=("query",))


class NoQuery(BaseModel):
    """The query string of an operation that reads none: any parameter is refused."""

    model_config = ConfigDict(extra="forbid")


# The attribute with_query leaves on a handler, for refuse_unread_query to find.
QUERY_MODEL = "query_model"
# The spec is a document, not a resource: a cache-buster on its URL harms nothing.
DOCUMENT_ENDPOINTS = frozenset({"api.specs"})

Handler = Callable[..., Any]


def with_query(model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Validate the query string with ``model`` and pass it to the handler as ``q``."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def read(*args: Any, **kwargs: Any) -> Any:
            return handler(*args, q=query(model), **kwargs)

        setattr(read, QUERY_MODEL, model)
        return read

    return decorate


def refuse_unread_query() -> None:
    """422 for a query string on an operation that reads none, as the lists refuse a name
    they do not know: ``DELETE /jobs/<id>?force=1`` must not pass for a force it ignores."""
    if not request.args or request.endpoint in DOCUMENT_ENDPOINTS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    method = "get" if request.method == "HEAD" else request.method.lower()
    handler = getattr(getattr(view, "view_class", None), method, None)
    if handler is not None and not hasattr(handler, QUERY_MODEL):
        query(NoQuery)


class ListQuery(BaseModel):
    """A page of a job list: its size and where it continues."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = None


class FileListQuery(ListQuery):
    """GET /files: a page, and optionally only uploads or only the files jobs made."""

    kind: Literal["upload", "output"] | None = None


class JobListQuery(ListQuery):
    """GET /jobs: a page, and the filters that narrow it."""

    type: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    status: Status | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None


class JobRequest(When):
    """A job to run: its type, its params (checked by the type's model) and when."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Annotated[str, Field(min_length=1, max_length=64)]
    params: Any = Field(default_factory=dict)
    priority: (
        Annotated[int, Field(ge=0, le=9, strict=True, description="0 runs first; default 5")] | None
    ) = None
    callback_url: (
        Annotated[
            CallbackUrl,
            Field(
                description="http(s) URL POSTed the job once it ends; its host must be "
                "public (or in JOBLINE_WEBHOOK_ALLOWED_NETWORKS)"
            ),
        ]
        | None
    ) = None

    def fingerprint(self) -> str:
        """A digest of the request as sent, to tell a repeat from a different request."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class BatchRequest(BaseModel):
    """POST /jobs:batch; each item is checked on its own, so only the envelope is strict."""

    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH)]


def idempotency_key() -> str | None:
    """The Idempotency-Key header, if sent; 400 when it is empty, too long or not printable."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    return key


def refuse_idempotency_key(where: str) -> None:
    """400 for an Idempotency-Key where it is not honoured, rather than ignore it silently."""
    if request.headers.get(IDEMPOTENCY_HEADER) is not None:
        raise BadRequest(f"{IDEMPOTENCY_HEADER} is not supported on {where}")


def submitted(view: dict[str, Any], location: str, repeat: bool) -> tuple[Any, int, dict[str, str]]:
    """202 with the job and its Location; 200 when an idempotent request is repeated."""
    headers = {"Location": location}
    if repeat:
        headers["Idempotent-Replayed"] = "true"
    return view, 200 if repeat else 202, headers
