"""Files in job params and out of jobs: ``FileRef`` and what a running job may do with files.

A param of type ``FileRef`` is the id of an uploaded file; the API checks at
submission that it names one of the caller's files. A running job reads it
with ``ctx.open(ref)`` and makes files with ``ctx.save(...)``; the worker
supplies the ``FileAccess`` that does so (the catalogue knows nothing of the store).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any, Protocol

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from jobline.core import ids

# How a FileRef field shows in a type's JSON Schema; the board's order form
# offers an upload for it.
FILE_FORMAT = "jobline-file"


class FileRef(str):
    """The id of a file uploaded with ``POST /api/v1/files``."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._check,
            core_schema.str_schema(max_length=64),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler(schema)
        value.update(format=FILE_FORMAT, description="the id of a file from POST /api/v1/files")
        return value

    @classmethod
    def _check(cls, value: str) -> FileRef:
        if not ids.is_id(value):
            raise ValueError("not a file id (upload the file with POST /api/v1/files first)")
        return cls(value)


Loc = tuple[str | int, ...]


def file_refs(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, FileRef]]:
    """Every FileRef inside validated params, with where it is (``("fasta",)``)."""
    if isinstance(value, FileRef):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from file_refs(getattr(value, name), (*loc, name))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from file_refs(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from file_refs(item, (*loc, str(key)))


class FileAccess(Protocol):
    """Reading a job's input files and storing the files it makes."""

    def open(self, ref: str) -> IO[bytes]: ...

    def save(self, name: str, data: bytes | IO[bytes], content_type: str) -> dict[str, Any]: ...


class NoFiles:
    """The file access of a context that runs outside a worker (tests, scripts)."""

    def open(self, ref: str) -> IO[bytes]:
        raise RuntimeError("files are only available to a job run by a worker")

    def save(self, name: str, data: bytes | IO[bytes], content_type: str) -> dict[str, Any]:
        raise RuntimeError("files are only available to a job run by a worker")
