"""Split FASTA text into one item per record, each one an ``align`` job's params (Biopython)."""

from __future__ import annotations

import io
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from jobline.jobs import Context, job_type

MAX_RECORDS = 10_000
MAX_TEXT = 5_000_000


class SplitParams(BaseModel):
    """FASTA text: one or more records, each a ``>name`` line and its sequence lines."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fasta: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="FASTA text")]

    @field_validator("fasta")
    @classmethod
    def _parses(cls, text: str) -> str:
        records = _records(text)  # raises ValueError on text that is not FASTA
        if not records:
            raise ValueError("no FASTA records: each record starts with a '>name' line")
        if len(records) > MAX_RECORDS:
            raise ValueError(f"at most {MAX_RECORDS} records")
        empty = [name for name, seq in records if not seq]
        if empty:
            raise ValueError(f"records without a sequence: {', '.join(empty[:5])}")
        return text


class Record(BaseModel):
    name: str = Field(description="the record's id, the first word of its '>' line")
    seq_a: str = Field(description="its sequence, upper-cased, as align's seq_a")


class Records(RootModel[list[Record]]):
    """One item per record, in file order: the items a step with for_each fans out over."""


def _records(text: str) -> list[tuple[str, str]]:
    from Bio import SeqIO  # imported when first needed, as align does

    try:
        # Leading blank lines are no record; Biopython would call them comments and refuse.
        parsed = SeqIO.parse(io.StringIO(text.lstrip()), "fasta")
        return [(r.id, str(r.seq).upper()) for r in parsed]
    except ValueError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "not FASTA"
        raise ValueError(f"not FASTA: {first}") from None


@job_type("split_fasta", params=SplitParams, result=Records, soft_time_limit=60, time_limit=90)
def split_fasta(ctx: Context, params: SplitParams) -> Records:
    """Split FASTA text into records ({name, seq_a}), ready for align to fan out over.

    Pure: safe to run twice.
    """
    records = [Record(name=name, seq_a=seq) for name, seq in _records(params.fasta)]
    ctx.progress(1.0, f"{len(records)} records")
    return Records(records)
