"""Global pairwise alignment of two DNA, RNA or protein sequences (Biopython)."""

from __future__ import annotations

import io
import logging
from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from jobline.core.errors import BadJobInput
from jobline.jobs import Context, FileRef, job_type

if TYPE_CHECKING:
    from Bio.Align import PairwiseAligner

# Biopython (and numpy) are imported when first needed, not when the API loads
# the catalogue: the API only needs them to check a matrix name.

log = logging.getLogger(__name__)

# One job stays bounded: 5,000 x 5,000 cells align in well under a second and
# the traceback needs about 60 MB.
MAX_LENGTH = 5000

Alphabet = Literal["dna", "rna", "protein"]
LETTERS: dict[str, frozenset[str]] = {
    "dna": frozenset("ACGTRYSWKMBDHVN"),  # IUPAC nucleotide codes
    "rna": frozenset("ACGURYSWKMBDHVN"),
    "protein": frozenset("ACDEFGHIKLMNPQRSTVWYBZXJUO*"),
}

Sequence = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=MAX_LENGTH),
    Field(description=f"letters of the alphabet, case-insensitive, at most {MAX_LENGTH}"),
]
Score = Annotated[float, Field(ge=-1000, le=1000)]
GapScore = Annotated[float, Field(ge=-1000, le=0)]


@cache
def matrix_names() -> tuple[str, ...]:
    """The substitution matrices Biopython ships."""
    from Bio.Align import substitution_matrices

    return tuple(substitution_matrices.load())


@cache
def matrix_letters(name: str) -> frozenset[str]:
    """The letters a substitution matrix has scores for."""
    from Bio.Align import substitution_matrices

    return frozenset(substitution_matrices.load(name).alphabet)


class Scoring(BaseModel):
    """Match and mismatch scores, or a substitution matrix by name; gap scores (<= 0)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    match: Score | None = None
    mismatch: Score | None = None
    matrix: Annotated[
        str | None,
        Field(description="a name from Bio.Align.substitution_matrices, e.g. BLOSUM62"),
    ] = None
    open_gap: GapScore | None = None
    extend_gap: GapScore | None = None

    @field_validator("matrix")
    @classmethod
    def _known_matrix(cls, name: str | None) -> str | None:
        if name is not None and name not in matrix_names():
            raise ValueError(f"unknown substitution matrix; one of {', '.join(matrix_names())}")
        return name

    @model_validator(mode="after")
    def _matrix_or_scores(self) -> Scoring:
        if self.matrix is not None and (self.match is not None or self.mismatch is not None):
            raise ValueError("give either a matrix or match/mismatch scores, not both")
        return self


def wrong_letters(seq: str, alphabet: str) -> str:
    """The letters of ``seq`` outside ``alphabet`` (the first 20), or nothing."""
    return "".join(sorted(set(seq) - LETTERS[alphabet])[:20])


class AlignParams(BaseModel):
    """Two sequences of one alphabet, or a FASTA file of two, and optional scoring."""

    model_config = ConfigDict(extra="forbid", strict=True)

    alphabet: Alphabet = "dna"
    # A workflow's split_fasta items carry their record's name; align only keeps it.
    name: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="a label for the pair, e.g. the record seq_a came from"
    )
    seq_a: Sequence | None = None
    seq_b: Sequence | None = None
    fasta: Annotated[
        FileRef | None,
        Field(description="instead of seq_a and seq_b: a FASTA file of exactly two records"),
    ] = None
    scoring: Scoring | None = None

    @field_validator("seq_a", "seq_b")
    @classmethod
    def _in_alphabet(cls, seq: str | None, info: ValidationInfo) -> str | None:
        alphabet = info.data.get("alphabet", "dna")
        if seq is not None and (wrong := wrong_letters(seq, alphabet)):
            raise ValueError(f"letters not in the {alphabet} alphabet: {wrong}")
        return seq

    @model_validator(mode="after")
    def _sequences_or_file(self) -> AlignParams:
        # Raised as a ValidationError so that each error names its field.
        given = {"seq_a": self.seq_a is not None, "seq_b": self.seq_b is not None}
        errors: list[InitErrorDetails] = []
        if self.fasta is not None and any(given.values()):
            both = PydanticCustomError("file_or_sequences", "give either fasta or seq_a and seq_b")
            errors.append(InitErrorDetails(type=both, loc=("fasta",), input=self.fasta))
        elif self.fasta is None:
            errors += [
                InitErrorDetails(type="missing", loc=(name,), input=None)
                for name, present in given.items()
                if not present
            ]
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @field_validator("scoring")
    @classmethod
    def _matrix_covers_sequences(
        cls, scoring: Scoring | None, info: ValidationInfo
    ) -> Scoring | None:
        if scoring is None or scoring.matrix is None:
            return scoring
        letters = matrix_letters(scoring.matrix)
        for name in ("seq_a", "seq_b"):
            missing = sorted(set(info.data.get(name) or "") - letters)
            if missing:
                raise ValueError(
                    f"matrix {scoring.matrix} has no score for {''.join(missing)} in {name}"
                )
        return scoring


class AlignResult(BaseModel):
    score: float
    aligned_a: str = Field(description="seq_a with gaps (-) inserted")
    aligned_b: str = Field(description="seq_b with gaps (-) inserted")
    length: int
    identities: int
    mismatches: int
    gaps: int


def aligner(scoring: Scoring | None) -> PairwiseAligner:
    """A global aligner with the given scoring over Biopython's defaults."""
    from Bio.Align import PairwiseAligner, substitution_matrices

    aln = PairwiseAligner(mode="global")
    if scoring is None:
        return aln
    if scoring.matrix is not None:
        aln.substitution_matrix = substitution_matrices.load(scoring.matrix)
    if scoring.match is not None:
        aln.match_score = scoring.match
    if scoring.mismatch is not None:
        aln.mismatch_score = scoring.mismatch
    if scoring.open_gap is not None:
        aln.open_gap_score = scoring.open_gap
    if scoring.extend_gap is not None:
        aln.extend_gap_score = scoring.extend_gap
    return aln


@job_type(
    "align",
    params=AlignParams,
    result=AlignResult,
    soft_time_limit=120,
    time_limit=150,
    pure=True,
)
def align(ctx: Context, params: AlignParams) -> AlignResult:
    """Global pairwise alignment (Biopython PairwiseAligner): score and one optimal alignment.

    Given a FASTA file, also saves the alignment as ``alignment.txt``. Safe to
    run twice: a new attempt replaces the file.
    """
    names, (seq_a, seq_b) = ("seq_a", "seq_b"), (params.seq_a or "", params.seq_b or "")
    if params.fasta is not None:
        names, (seq_a, seq_b) = read_pair(ctx, params.fasta, params)
    aln = aligner(params.scoring)
    ctx.progress(0.05, "aligner ready")
    score = aln.score(seq_a, seq_b)
    ctx.progress(0.5, "score computed")
    best = aln.align(seq_a, seq_b)[0]
    counts = best.counts()
    log.info(
        "aligned %s (%d letters) with %s (%d letters): score %g",
        names[0],
        len(seq_a),
        names[1],
        len(seq_b),
        score,
    )
    if params.fasta is not None:
        ctx.save("alignment.txt", format(best).encode(), content_type="text/plain; charset=utf-8")
    ctx.progress(0.95, "alignment traced")
    return AlignResult(
        score=float(score),
        aligned_a=best[0],
        aligned_b=best[1],
        length=best.length,
        identities=counts.identities,
        mismatches=counts.mismatches,
        gaps=counts.gaps,
    )


def read_pair(
    ctx: Context, ref: FileRef, params: AlignParams
) -> tuple[tuple[str, str], tuple[str, str]]:
    """The ids and sequences of the FASTA file's two records; BadJobInput unless it has two."""
    from Bio import SeqIO

    with ctx.open(ref) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        try:
            records = [r for _, r in zip(range(3), SeqIO.parse(text, "fasta"), strict=False)]
        except ValueError as exc:
            raise BadJobInput(f"fasta: not a FASTA file: {exc}") from None
    if len(records) != 2:
        found = "more" if len(records) > 2 else len(records)
        raise BadJobInput(f"fasta: needs exactly two records, found {found}")
    seqs = tuple(str(r.seq).upper() for r in records)
    for record, seq in zip(records, seqs, strict=True):
        if not 1 <= len(seq) <= MAX_LENGTH:
            raise BadJobInput(f"fasta: {record.id} has {len(seq)} letters (1 to {MAX_LENGTH})")
        if wrong := wrong_letters(seq, params.alphabet):
            raise BadJobInput(f"fasta: {record.id} has letters not in {params.alphabet}: {wrong}")
    if params.scoring is not None and params.scoring.matrix is not None:
        missing = sorted(set("".join(seqs)) - matrix_letters(params.scoring.matrix))
        if missing:
            raise BadJobInput(f"fasta: matrix has no score for {''.join(missing)}")
    return (records[0].id, records[1].id), (seqs[0], seqs[1])
