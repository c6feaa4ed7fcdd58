"""split_fasta and rank_alignments: the two job types of the FASTA workflow, on their own."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobline.core.settings import Settings
from jobline.jobs import Context, catalogue, load

load()
SPLIT = catalogue.get("split_fasta")
RANK = catalogue.get("rank_alignments")
ALIGN = catalogue.get("align")


def run(job: Any, params: dict[str, Any], inputs: dict[str, Any] | None = None) -> Any:
    ctx = Context("job", 1, Settings(), inputs=inputs or {})
    return job.run(ctx, job.validate_params(params).model_dump(mode="json"))


def test_split_fasta_gives_one_align_ready_item_per_record_in_file_order() -> None:
    fasta = ">first some description\nacgt\nAC\n>second\nGGTT\n"
    items = run(SPLIT, {"fasta": fasta})
    assert items == [{"name": "first", "seq_a": "ACGTAC"}, {"name": "second", "seq_a": "GGTT"}]
    # each item, merged with a step's params, is a valid align request
    for item in items:
        ALIGN.validate_params({"seq_b": "GATTACA", **item})


@pytest.mark.parametrize(
    ("fasta", "says"),
    [
        ("ACGT\n", "not FASTA"),
        ("", "at least 1 character"),
        (">a\n\n>b\nAC\n", "without a sequence"),
        ("\n\n", "no FASTA records"),
    ],
    ids=["no header", "empty", "an empty record", "blank lines"],
)
def test_split_fasta_refuses_text_that_is_not_fasta_with_a_reason(fasta: str, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        SPLIT.validate_params({"fasta": fasta})
    assert says in str(refused.value)


def test_rank_alignments_orders_the_records_by_score_best_first_keeping_ties_in_order() -> None:
    names = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    scores = [{"score": 1.0, "identities": 1}, {"score": 5.0}, {"score": 1.0, "length": 3}]
    ranked = run(RANK, {}, {"split": names, "align": scores})["ranking"]
    assert [(r["rank"], r["name"], r["score"]) for r in ranked] == [
        (1, "b", 5.0),
        (2, "a", 1.0),
        (3, "c", 1.0),
    ]
    top = run(RANK, {"top": 1}, {"split": names, "align": scores})["ranking"]
    assert [r["name"] for r in top] == ["b"]


@pytest.mark.parametrize(
    "inputs",
    [{}, {"split": [{"name": "a"}]}, {"split": [{"name": "a"}], "align": []}],
    ids=["no inputs", "no alignments", "counts differ"],
)
def test_rank_alignments_fails_clearly_without_matching_inputs(inputs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="split|align"):
        run(RANK, {}, inputs)
