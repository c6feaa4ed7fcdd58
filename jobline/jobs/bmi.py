"""The seed's demo: a body-mass index computed after some simulated work."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from jobline.jobs import Context, job_type


class BmiParams(BaseModel):
    """A person's name, weight in kilograms and height in centimetres."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    weight: Annotated[float, Field(gt=0, le=1000, description="kilograms")]
    # From 20 cm: a height given in metres by mistake (1.8) is refused, not computed.
    height: Annotated[float, Field(ge=20, le=300, description="centimetres")]


Category = Literal["underweight", "normal", "overweight", "obese"]


class BmiResult(BaseModel):
    bmi: float
    category: Category


def bmi(weight_kg: float, height_cm: float) -> float:
    """Body-mass index, rounded to two decimals."""
    height_m = height_cm / 100
    return round(weight_kg / height_m**2, 2)


def category(value: float) -> Category:
    """WHO category of a body-mass index."""
    if value < 18.5:
        return "underweight"
    if value < 25:
        return "normal"
    if value < 30:
        return "overweight"
    return "obese"


@job_type("bmi", params=BmiParams, result=BmiResult, soft_time_limit=60, time_limit=90, pure=True)
def compute_bmi(ctx: Context, params: BmiParams) -> BmiResult:
    """Body-mass index with its WHO category. Pure: safe to run twice."""
    seconds = ctx.settings.bmi_seconds
    steps = max(1, int(seconds * 4))
    for step in range(steps):
        time.sleep(seconds / steps)
        ctx.progress((step + 1) / steps)
    value = bmi(params.weight, params.height)
    return BmiResult(bmi=value, category=category(value))
