"""Files: uploads streamed into GridFS, their metadata and bytes, and the files jobs made.

``POST /files`` reads its multipart body in pieces (werkzeug's sans-IO
decoder) and writes each piece to GridFS as it arrives, so no upload is ever
held whole in memory or spooled to disk. Its body limit is
``JOBLINE_MAX_FILE_BYTES``, not the JSON limit of the other endpoints; past it,
and for any body that is cut short or malformed, nothing is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from flask import Response, request, url_for
from flask_restx import Namespace, Resource
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from jobline.api import access, auth, docs
from jobline.api.payloads import FileListQuery, with_query
from jobline.api.problems import BadRequest, InvalidInput, UnsupportedMediaType
from jobline.api.services import files, pipeline
from jobline.core.errors import FileNotFound
from jobline.store.files import file_view, valid_content_type, valid_name

ns = Namespace("files", description="Files for jobs to read, and the files jobs made")
# Mounted at the API root, for the files of a job beside the job itself.
job_files_ns = Namespace("job-files", description="The files a job made", path="/")

UPLOAD_ENDPOINT = "api.files_upload"
FIELD = "file"
READ_BYTES = 256 * 1024
# What the decoder may hold at once: one read, and part headers that must fit in it.
MAX_DECODER_BUFFER = READ_BYTES + 64 * 1024

file_model = ns.schema_model(
    "File",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "size": {"type": "integer"},
            "kind": {
                "type": "string",
                "enum": ["upload", "output"],
                "x-nullable": True,
                "description": "uploaded by a caller, or made by a job (null: from before kinds)",
            },
            "content_type": {"type": "string"},
            "sha256": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": {
                "type": "string",
                "format": "date-time",
                "x-nullable": True,
                "description": "null while a job uses the file: it lives as long as the job",
            },
        },
    },
)
page_model = docs.page_model(ns, file_model)
KIND_FILTER = {
    "kind": {
        "description": "only uploads, or only the files jobs made",
        "type": "string",
        "enum": ["upload", "output"],
    }
}
upload_parser = ns.parser()
upload_parser.add_argument("file", location="files", type=FileStorage, required=True)


def _events(decoder: MultipartDecoder) -> Iterator[Any]:
    """The decoder's events as the request body arrives; 400 if it ends too early."""
    stream = request.stream
    while True:
        try:
            event = decoder.next_event()
        except ValueError as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None
        if isinstance(event, NeedData):
            try:
                chunk = stream.read(READ_BYTES)
            except ClientDisconnected:
                raise BadRequest("the body was cut short") from None
            decoder.receive_data(chunk or None)
        elif isinstance(event, Epilogue):
            return
        else:
            yield event


def _file_data(events: Iterator[Any]) -> Iterator[bytes]:
    """The bytes of the part just announced, piece by piece."""
    for event in events:
        if not isinstance(event, Data):
            raise BadRequest("malformed multipart body")
        if event.data:
            yield event.data
        if not event.more_data:
            return
    raise BadRequest("the body was cut short")


def _skip_part(events: Iterator[Any]) -> None:
    for _ in _file_data(events):
        pass


def _boundary() -> bytes:
    media_type, options = parse_options_header(request.headers.get("Content-Type", ""))
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType(f"send the file as multipart/form-data, field {FIELD!r}")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise BadRequest("multipart/form-data needs a boundary")
    return boundary.encode("latin-1", "replace")


def _bad_file(msg: str) -> InvalidInput:
    return InvalidInput(msg, [{"loc": ["body", FIELD], "msg": msg, "type": "file"}])


def _name_and_type(event: File | Field) -> tuple[str, str]:
    """The file name and media type of the ``file`` part; InvalidInput if unusable."""
    if not isinstance(event, File) or not event.filename:
        raise _bad_file(f"the {FIELD!r} part must be a file with a file name")
    try:
        return valid_name(event.filename), valid_content_type(event.headers.get("Content-Type"))
    except ValueError as exc:
        raise _bad_file(str(exc)) from None


def _upload() -> dict[str, Any]:
    """Stream the ``file`` part into GridFS; read the rest of the body to see it is whole."""
    decoder = MultipartDecoder(_boundary(), max_form_memory_size=MAX_DECODER_BUFFER)
    events = _events(decoder)
    stored: dict[str, Any] | None = None
    try:
        for event in events:
            if not isinstance(event, File | Field):
                continue  # the preamble
            if event.name != FIELD:
                _skip_part(events)
                continue
            if stored is not None:
                raise _bad_file(f"send one {FIELD!r} part")
            name, content_type = _name_and_type(event)
            stored = files().upload(
                _file_data(events),
                name=name,
                content_type=content_type,
                owner=auth.owner(),
                max_bytes=pipeline().settings.max_file_bytes,
            )
            if stored["length"] == 0:
                raise _bad_file("the file is empty")
    except BaseException:
        if stored is not None:
            files().delete(stored["_id"])
        raise
    if stored is None:
        raise _bad_file(f"no {FIELD!r} part: send the file as multipart/form-data field {FIELD!r}")
    return stored


def content_disposition(name: str) -> str:
    """``attachment`` with the name, plain for old clients and UTF-8 for the rest (RFC 6266)."""
    plain = name.encode("ascii", "replace").decode().replace("\\", "_").replace('"', "_")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def send(file_id: str, name: str, content_type: str, sha256: str | None, size: int) -> Response:
    """The bytes of a stored file, streamed from GridFS, with the headers a download needs."""
    if sha256 and sha256 in request.if_none_match:
        response = Response(status=304)
        response.set_etag(sha256)
        return response
    store = files()
    store.get(file_id)  # FileNotFound (404) before the 200 is sent
    response = Response(store.content(file_id), content_type=content_type, direct_passthrough=True)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = content_disposition(name)
    # The bytes are the uploader's: never let a browser run them as this origin's page.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    if sha256:
        response.set_etag(sha256)
    return response


@ns.route("", endpoint="files_upload")
class Files(Resource):
    @ns.doc("list_files", params={**docs.LIST_PARAMS, **KIND_FILTER})
    @ns.response(200, "Files, newest first: uploads and the files jobs made", page_model)
    @docs.problems(ns, 400, 503)
    @with_query(FileListQuery)
    def get(self, q: FileListQuery) -> Any:
        """List files, newest first, one page at a time (an API key sees its own)."""
        store, scope = files(), auth.scope()
        return docs.listed(
            lambda: store.list(limit=q.limit, cursor=q.cursor, owner=scope, kind=q.kind),
            file_view,
        )

    @ns.doc("upload_file")
    @ns.expect(upload_parser)
    @ns.response(201, "Stored", file_model)
    @ns.response(400, "Malformed or cut-short body")
    @ns.response(413, "Larger than JOBLINE_MAX_FILE_BYTES; nothing kept")
    @ns.response(415, "Not multipart/form-data")
    @ns.response(422, "No file part, an empty file, or a bad file name")
    @docs.problems(ns, 503)
    def post(self) -> Any:
        """Upload a file (multipart/form-data, field `file`) for jobs to read.

        Kept for `JOBLINE_FILE_TTL_SECONDS` unless a job uses it; then as long as that job.
        """
        stored = _upload()
        return (
            file_view(stored),
            201,
            {"Location": url_for("api.files_file", file_id=stored["_id"])},
        )


@ns.route("/<string:file_id>", endpoint="files_file")
@ns.response(404, "No such file")
class OneFile(Resource):
    @ns.doc("get_file")
    @ns.response(200, "The file's metadata", file_model)
    @docs.problems(ns, 503)
    def get(self, file_id: str) -> Any:
        """A file's name, size, content type, SHA-256 and expiry."""
        return file_view(files().get(file_id, auth.scope()))

    @ns.doc("delete_file")
    @ns.response(204, "Deleted")
    @ns.response(409, "An unfinished job uses it")
    @docs.problems(ns, 503)
    def delete(self, file_id: str) -> Any:
        """Delete a file no unfinished job uses."""
        files().delete(file_id, auth.scope())
        return Response(status=204)


@ns.route("/<string:file_id>/content")
@ns.response(404, "No such file")
class FileContent(Resource):
    @ns.doc("download_file")
    @ns.produces(["application/octet-stream"])
    @ns.response(200, "The bytes, with Content-Type, Content-Length and an ETag (its SHA-256)")
    @docs.problems(ns, 503)
    def get(self, file_id: str) -> Response:
        """Download a file's bytes."""
        record = files().get(file_id, auth.scope())
        meta = record.get("metadata") or {}
        return send(
            record["_id"],
            record["filename"],
            meta["content_type"],
            meta.get("sha256"),
            record["length"],
        )


@job_files_ns.route("/jobs/<string:job_id>/files/<string:name>")
@job_files_ns.response(404, "No such job, or no file of that name")
class JobFile(Resource):
    @job_files_ns.doc("download_job_file")
    @job_files_ns.produces(["application/octet-stream"])
    @job_files_ns.response(200, "The bytes, with Content-Type, Content-Length and an ETag")
    @docs.problems(job_files_ns, 503)
    def get(self, job_id: str, name: str) -> Response:
        """Download a file the job made, by name (as its `files` list shows)."""
        job = access.get(job_id)
        for entry in job.get("files") or []:
            if entry["name"] == name:
                return send(
                    entry["file_id"], name, entry["content_type"], entry["sha256"], entry["size"]
                )
        raise FileNotFound(f"job {job_id} made no file called {name!r}")
