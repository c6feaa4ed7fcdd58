"""What a workflow submission must be: its model, and the graph rules checked before storing.

Each refusal names its place (``["steps", 2, "needs"]``) as the API's problem
documents do, and every rule is checked before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from jobline.core.errors import JoblineError
from jobline.engine.webhooks import CallbackUrl
from jobline.jobs import Catalogue

MAX_STEPS = 100
STEP_ID = r"^[a-z0-9_-]{1,64}$"

StepId = Annotated[str, StringConstraints(pattern=STEP_ID)]
Problem = dict[str, Any]


class StepSpec(BaseModel):
    """One step: a job type and its params, the steps it needs, and what it fans out over."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: StepId = Field(description=f"unique in the workflow, matching {STEP_ID}")
    type: Annotated[str, Field(min_length=1, max_length=64)]
    params: dict[str, Any] = Field(default_factory=dict)
    needs: Annotated[list[StepId], Field(max_length=MAX_STEPS)] = Field(default_factory=list)
    for_each: StepId | None = Field(
        default=None,
        description="one of needs, whose result is a list of objects: one job per item, "
        "with params {**params, **item}",
    )


class WorkflowRequest(BaseModel):
    """POST /workflows: 1 to 100 steps, and what applies to every step job."""

    model_config = ConfigDict(extra="forbid")

    steps: Annotated[list[StepSpec], Field(min_length=1, max_length=MAX_STEPS)]
    priority: Annotated[int, Field(ge=0, le=9, strict=True)] | None = None
    callback_url: (
        Annotated[
            CallbackUrl,
            Field(
                description="http(s) URL POSTed the workflow once it ends; its host must be "
                "public (or in JOBLINE_WEBHOOK_ALLOWED_NETWORKS)"
            ),
        ]
        | None
    ) = None


class WorkflowInvalid(JoblineError):
    """A workflow whose graph breaks a rule; ``errors`` names each place."""

    status = 422
    title = "Invalid input"

    def __init__(self, errors: list[Problem]) -> None:
        places = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        super().__init__(f"invalid workflow: {places}")
        self.errors = errors


def check(request: WorkflowRequest, catalogue: Catalogue) -> None:
    """WorkflowInvalid unless every rule holds."""
    if found := problems(request, catalogue):
        raise WorkflowInvalid(found)


def problems(request: WorkflowRequest, catalogue: Catalogue) -> list[Problem]:
    """Every rule the graph breaks, each naming its place; empty when it may be stored."""
    found: list[Problem] = []
    steps = request.steps
    position: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.id in position:
            found.append(_problem(i, "id", f"step id {step.id!r} is used twice", "duplicate_id"))
        position.setdefault(step.id, i)
    for i, step in enumerate(steps):
        found += _step_problems(i, step, position, catalogue)
    # Cycles are looked for once every need names exactly one step.
    if not any(p["type"] in ("duplicate_id", "unknown_step") for p in found):
        found += [_problem(i, "needs", msg, "cycle") for i, msg in _cycles(steps, position)]
    return found


def _step_problems(
    i: int, step: StepSpec, position: dict[str, int], catalogue: Catalogue
) -> Iterator[Problem]:
    if step.type not in catalogue:
        known = ", ".join(catalogue.names())
        yield _problem(i, "type", f"unknown job type; one of {known}", "job_type")
    for need in step.needs:
        if need not in position:
            yield _problem(i, "needs", f"needs {need!r}, which is not a step", "unknown_step")
    if step.for_each is not None and step.for_each not in step.needs:
        yield _problem(i, "for_each", "for_each must name one of the step's needs", "for_each")
    if step.for_each is None and step.type in catalogue:
        try:
            catalogue.get(step.type).validate_params(step.params)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                loc = ["steps", i, "params", *err["loc"]]
                yield {"loc": loc, "msg": err["msg"], "type": err["type"]}


def _cycles(steps: Sequence[StepSpec], position: dict[str, int]) -> Iterator[tuple[int, str]]:
    """Steps on a cycle of needs (depth-first search, three colours)."""
    state = [0] * len(steps)  # 0 unseen, 1 on the current path, 2 done
    reported: set[int] = set()

    def visit(i: int, path: list[int]) -> Iterator[tuple[int, str]]:
        state[i] = 1
        for need in steps[i].needs:
            j = position[need]
            if state[j] == 1 and j not in reported:
                here = [*path, i]
                cycle = [*here[here.index(j) :], j]
                reported.add(j)
                yield j, "the needs form a cycle: " + " -> ".join(steps[k].id for k in cycle)
            elif state[j] == 0:
                yield from visit(j, [*path, i])
        state[i] = 2

    for i in range(len(steps)):
        if state[i] == 0:
            yield from visit(i, [])


def _problem(i: int, field: str, msg: str, kind: str) -> Problem:
    return {"loc": ["steps", i, field], "msg": msg, "type": kind}


def dependents(steps: Sequence[dict[str, Any]], ended: set[str]) -> set[str]:
    """The ids of every step that needs one of ``ended``, directly or not."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for step in steps:
            if step["id"] not in found and any(n in ended or n in found for n in step["needs"]):
                found.add(step["id"])
                changed = True
    return found
