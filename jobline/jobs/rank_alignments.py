"""Rank the alignments of a fan-out by score, named after the records they came from."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from jobline.jobs import Context, job_type

StepName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]


class RankParams(BaseModel):
    """Which needed steps give the records' names and the alignments (one per record)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    names_from: StepName = Field("split", description="a step whose result lists {name, …}")
    alignments_from: StepName = Field("align", description="a step whose result lists {score, …}")
    top: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="keep only the best so many"
    )


class Ranked(BaseModel):
    rank: int
    name: str
    score: float
    identities: int | None = None
    length: int | None = None


class Ranking(BaseModel):
    ranking: list[Ranked] = Field(description="best score first; ties keep the records' order")


def _list(inputs: dict[str, Any], step: str) -> list[dict[str, Any]]:
    value = inputs.get(step)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"this step needs {step!r}, whose result must be a list of objects")
    return value


@job_type(
    "rank_alignments",
    params=RankParams,
    result=Ranking,
    soft_time_limit=60,
    time_limit=90,
    step_only=True,
    pure=True,
)
def rank_alignments(ctx: Context, params: RankParams) -> Ranking:
    """Rank alignments by score, best first, naming each after its record (a workflow step).

    Reads ``ctx.inputs``: the names step's records and the alignments step's
    results, item by item. Pure: safe to run twice.
    """
    records = _list(ctx.inputs, params.names_from)
    alignments = _list(ctx.inputs, params.alignments_from)
    if len(records) != len(alignments):
        raise ValueError(
            f"{len(records)} records from {params.names_from!r} but "
            f"{len(alignments)} alignments from {params.alignments_from!r}"
        )
    pairs = sorted(zip(records, alignments, strict=True), key=lambda pair: -float(pair[1]["score"]))
    ranking = [
        Ranked(
            rank=n,
            name=str(record.get("name", f"record {n}")),
            score=float(alignment["score"]),
            identities=alignment.get("identities"),
            length=alignment.get("length"),
        )
        for n, (record, alignment) in enumerate(pairs, start=1)
    ]
    return Ranking(ranking=ranking[: params.top] if params.top else ranking)
