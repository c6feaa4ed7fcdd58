"""The align job type: Biopython's global alignment, bounded and validated."""

from __future__ import annotations

from typing import Any

import pytest
from Bio.Align import PairwiseAligner, substitution_matrices
from pydantic import ValidationError

from jobline.core.settings import Settings
from jobline.jobs import Context, catalogue, load
from jobline.jobs.align import MAX_LENGTH, AlignParams
from tests.conftest import Api

load()
ALIGN = catalogue.get("align")


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Run the align function as a worker would, recording the progress it reports."""
    reports: list[tuple[float, str | None]] = []
    ctx = Context("job", 1, Settings(), report=lambda f, m=None: reports.append((f, m)))
    result = ALIGN.run(ctx, ALIGN.validate_params(params).model_dump(mode="json"))
    assert result is not None
    assert [f for f, _ in reports] == sorted(f for f, _ in reports)
    assert len(reports) >= 3
    return result


@pytest.mark.parametrize(
    ("seq_a", "seq_b"),
    [
        ("GATTACA", "GCATGCU".replace("U", "T")),
        ("ACGT", "ACGT"),
        ("A", "TTTTTTTT"),
        ("ACCGGTTAACCGGTT", "ACGTACGTAACG"),
        ("GAACTTCGATCGATCGATCGGGGAAATTT", "GACTTCGATGGATCGCGGAATTT"),
    ],
)
def test_with_no_scoring_the_score_is_biopython_s_default_score(seq_a: str, seq_b: str) -> None:
    result = run({"seq_a": seq_a, "seq_b": seq_b})
    assert result["score"] == PairwiseAligner().score(seq_a, seq_b)
    assert result["aligned_a"].replace("-", "") == seq_a
    assert result["aligned_b"].replace("-", "") == seq_b
    assert len(result["aligned_a"]) == len(result["aligned_b"]) == result["length"]
    columns = list(zip(result["aligned_a"], result["aligned_b"], strict=True))
    assert result["identities"] == sum(a == b for a, b in columns)


def test_match_mismatch_and_gap_scores_are_applied() -> None:
    scoring = {"match": 2, "mismatch": -1, "open_gap": -2, "extend_gap": -0.5}
    result = run({"seq_a": "GATTACA", "seq_b": "GCATGCT", "scoring": scoring})
    reference = PairwiseAligner(
        match_score=2, mismatch_score=-1, open_gap_score=-2, extend_gap_score=-0.5
    )
    assert result["score"] == reference.score("GATTACA", "GCATGCT")


def test_a_protein_alignment_uses_the_named_substitution_matrix() -> None:
    params = {
        "alphabet": "protein",
        "seq_a": "heagawghee",
        "seq_b": "PAWHEAE",
        "scoring": {"matrix": "BLOSUM62", "open_gap": -10, "extend_gap": -0.5},
    }
    result = run(params)
    reference = PairwiseAligner(
        substitution_matrix=substitution_matrices.load("BLOSUM62"),
        open_gap_score=-10,
        extend_gap_score=-0.5,
    )
    assert result["score"] == reference.score("HEAGAWGHEE", "PAWHEAE")
    assert result["aligned_a"].replace("-", "") == "HEAGAWGHEE"


def test_sequences_are_upper_cased_and_trimmed() -> None:
    params = AlignParams.model_validate({"seq_a": " acgt\n", "seq_b": "AcGt"})
    assert (params.seq_a, params.seq_b) == ("ACGT", "ACGT")


def test_the_longest_allowed_sequences_align() -> None:
    result = run({"seq_a": "ACGT" * (MAX_LENGTH // 4), "seq_b": "TGCA" * (MAX_LENGTH // 4)})
    assert result["length"] >= MAX_LENGTH


DNA = {"seq_a": "ACGT", "seq_b": "ACGA"}
BAD_PARAMS: list[tuple[str, dict[str, Any], str]] = [
    ("no seq_a", {"seq_b": "ACGT"}, "seq_a"),
    ("empty seq_b", {**DNA, "seq_b": ""}, "seq_b"),
    ("blank seq_a", {**DNA, "seq_a": "   "}, "seq_a"),
    ("seq_a too long", {**DNA, "seq_a": "A" * (MAX_LENGTH + 1)}, "seq_a"),
    ("protein letters as DNA", {**DNA, "seq_b": "MKVLA"}, "seq_b"),
    ("digits", {**DNA, "seq_a": "ACG1"}, "seq_a"),
    ("a gap in the input", {**DNA, "seq_a": "AC-GT"}, "seq_a"),
    ("U in DNA", {**DNA, "seq_a": "ACGU"}, "seq_a"),
    ("T in RNA", {**DNA, "alphabet": "rna"}, "seq_a"),
    ("B in protein is fine but 1 is not", {**DNA, "alphabet": "protein", "seq_b": "B1"}, "seq_b"),
    ("unknown alphabet", {**DNA, "alphabet": "latin"}, "alphabet"),
    ("seq a number", {**DNA, "seq_a": 42}, "seq_a"),
    ("unknown matrix", {**DNA, "scoring": {"matrix": "BLOSUM99"}}, "scoring.matrix"),
    ("matrix and match", {**DNA, "scoring": {"matrix": "NUC.4.4", "match": 1}}, "scoring"),
    (
        "matrix without the letters",
        {"alphabet": "protein", "seq_a": "OUJ", "seq_b": "A", "scoring": {"matrix": "BLOSUM62"}},
        "scoring",
    ),
    ("positive gap score", {**DNA, "scoring": {"open_gap": 1}}, "scoring.open_gap"),
    ("huge match score", {**DNA, "scoring": {"match": 1e9}}, "scoring.match"),
    ("score a string", {**DNA, "scoring": {"mismatch": "-1"}}, "scoring.mismatch"),
    ("unknown scoring field", {**DNA, "scoring": {"gap": -1}}, "scoring.gap"),
    ("unknown field", {**DNA, "mode": "local"}, "mode"),
    ("one sequence", {"seq_a": "ACGT"}, "seq_b"),
    ("a file and sequences", {**DNA, "fasta": "01a23115-fa66-7647-9c43-39aed6757908"}, "fasta"),
    ("a file id that is not an id", {"fasta": "reads.fa"}, "fasta"),
]


@pytest.mark.parametrize(
    ("params", "field"), [pytest.param(p, f, id=name) for name, p, f in BAD_PARAMS]
)
def test_invalid_params_are_refused_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AlignParams.model_validate(params)
    assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [field]


def test_an_alignment_job_runs_end_to_end(live_api: Api) -> None:
    body = {"type": "align", "params": {"seq_a": "GATTACA", "seq_b": "GCATGCT"}}
    job = live_api.submit_and_wait("/api/v1/jobs", body)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["score"] == PairwiseAligner().score("GATTACA", "GCATGCT")
    assert job["progress"] == 1.0


def test_bad_alignment_params_are_422_with_the_params_prefix(idle_api: Api) -> None:
    body = {"type": "align", "params": {"seq_a": "ACGT", "seq_b": "XYZ"}}
    response = idle_api.post("/api/v1/jobs", json=body)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["params", "seq_b"]]


def _upload(api: Api, text: str) -> str:
    response = api.post("/api/v1/files", files={"file": ("reads.fa", text.encode(), "text/plain")})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_align_reads_a_fasta_file_of_two_records_and_saves_the_alignment(live_api: Api) -> None:
    fasta = _upload(live_api, ">first read\nGATTACA\n>second\ngcatgct\n")
    job = live_api.submit_and_wait("/api/v1/jobs", {"type": "align", "params": {"fasta": fasta}})
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["score"] == PairwiseAligner().score("GATTACA", "GCATGCT")
    [saved] = job["files"]
    assert saved["name"] == "alignment.txt"
    text = live_api.get(saved["url"]).text
    expected = format(PairwiseAligner().align("GATTACA", "GCATGCT")[0])
    assert text == expected and saved["content_type"].startswith("text/plain")
    logged = [
        line["message"] for line in live_api.get(f"/api/v1/jobs/{job['id']}/logs").json()["items"]
    ]
    score = job["result"]["score"]
    assert logged == [f"aligned first (7 letters) with second (7 letters): score {score:g}"]


@pytest.mark.parametrize(
    "text",
    [">a\nACGT\n", ">a\nACGT\n>b\nACGT\n>c\nACGT\n", "", ">a\nACGT\n>b\nAC1T\n"],
    ids=["one record", "three records", "an empty file", "letters not in the alphabet"],
)
def test_a_fasta_file_that_is_not_two_good_records_fails_the_job_as_bad_input(
    live_api: Api, text: str
) -> None:
    fasta = _upload(live_api, text) if text else _upload(live_api, "not fasta at all")
    job = live_api.submit_and_wait("/api/v1/jobs", {"type": "align", "params": {"fasta": fasta}})
    assert job["status"] == "failed"
    assert job["error"]["reason"] == "bad_input" and job["files"] == []
