"""What a failed attempt leaves: the error the job record keeps, and the wait before a retry."""

from __future__ import annotations

import random
import traceback
from typing import Any

from jobline.jobs import RetryPolicy


def error_info(exc: BaseException, reason: str = "error") -> dict[str, Any]:
    """What the job record keeps of a failure: type, message and a short traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-5)
    return {
        "reason": reason,
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback": "".join(tb)[-4000:],
    }


def retry_delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds before the next try: exponential backoff, capped, with full jitter.

    Celery's autoretry does the same in whole seconds; jobs here may back off
    for less than one.
    """
    ceiling = min(policy.backoff_max_seconds, policy.backoff_seconds * 2 ** (attempt - 1))
    return random.uniform(0, ceiling) if policy.jitter else ceiling
