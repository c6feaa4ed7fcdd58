"""Split FASTA text, or an uploaded FASTA file, into one item per record, each one an ``align``
job's params (Biopython)."""

from __future__ import annotations

import io
from itertools import islice
from typing import IO, Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from jobline.core.errors import BadJobInput
from jobline.jobs import Context, FileRef, job_type

MAX_RECORDS = 10_000
MAX_TEXT = 5_000_000


class SplitParams(BaseModel):
    """FASTA text, or a FASTA file: one or more records, each a ``>name`` line and its sequence."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fasta: Annotated[
        str | None, Field(min_length=1, max_length=MAX_TEXT, description="FASTA text")
    ] = None
    fasta_file: Annotated[
        FileRef | None,
        Field(description="instead of fasta: an uploaded FASTA file, checked when the job runs"),
    ] = None

    @field_validator("fasta")
    @classmethod
    def _parses(cls, text: str | None) -> str | None:
        if text is not None:
            _check(_records(text))  # raises ValueError on text that is not FASTA
        return text

    @model_validator(mode="after")
    def _text_or_file(self) -> SplitParams:
        if (self.fasta is None) == (self.fasta_file is None):
            raise ValueError("give either fasta (the text) or fasta_file (an uploaded file)")
        return self


def _check(records: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The records, if they are 1 to MAX_RECORDS and none is empty; ValueError otherwise."""
    if not records:
        raise ValueError("no FASTA records: each record starts with a '>name' line")
    if len(records) > MAX_RECORDS:
        raise ValueError(f"at most {MAX_RECORDS} records")
    empty = [name for name, seq in records if not seq]
    if empty:
        raise ValueError(f"records without a sequence: {', '.join(empty[:5])}")
    return records


class Record(BaseModel):
    name: str = Field(description="the record's id, the first word of its '>' line")
    seq_a: str = Field(description="its sequence, upper-cased, as align's seq_a")


class Records(RootModel[list[Record]]):
    """One item per record, in file order: the items a step with for_each fans out over."""


def _records(text: str) -> list[tuple[str, str]]:
    # Leading blank lines are no record; Biopython would call them comments and refuse.
    return _parse(io.StringIO(text.lstrip()))


def _parse(handle: IO[str]) -> list[tuple[str, str]]:
    from Bio import SeqIO  # imported when first needed, as align does

    try:
        # One past the limit is enough to refuse a file of too many records.
        parsed = SeqIO.parse(handle, "fasta")
        return [(r.id, str(r.seq).upper()) for r in islice(parsed, MAX_RECORDS + 1)]
    except ValueError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "not FASTA"
        raise ValueError(f"not FASTA: {first}") from None


def _file_records(ctx: Context, ref: str) -> list[tuple[str, str]]:
    """The records of an uploaded file, read as a stream; BadJobInput if they are not good."""
    with ctx.open(ref) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        try:
            return _check(_parse(text))  # as align reads a file: from its first line
        except ValueError as exc:
            raise BadJobInput(f"fasta_file: {exc}") from None


@job_type(
    "split_fasta",
    params=SplitParams,
    result=Records,
    soft_time_limit=60,
    time_limit=90,
    pure=True,
)
def split_fasta(ctx: Context, params: SplitParams) -> Records:
    """Split FASTA text or a file into records ({name, seq_a}), ready for align to fan out over.

    Pure: safe to run twice.
    """
    if params.fasta_file is not None:
        found = _file_records(ctx, params.fasta_file)
    else:
        found = _records(params.fasta or "")
    records = [Record(name=name, seq_a=seq) for name, seq in found]
    ctx.progress(1.0, f"{len(records)} records")
    return Records(records)
