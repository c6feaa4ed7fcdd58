"""How long something that belongs to jobs (a log, a file) must be kept: as long as its jobs.

Logs and files are not removed by the job's own TTL index: each carries a
``check_at`` time instead, and the sweeper looks at those that are due. This
costs a job that has neither nothing, and a job that has them nothing at the
moment it ends. The verdict is read from the jobs collection by ``_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection

from jobline.store.records import TERMINAL

# A finished job that is past its expires_at goes within MongoDB's TTL monitor
# pass (about a minute): look again after that rather than every sweep.
RECHECK_AFTER_EXPIRY = timedelta(seconds=90)


@dataclass(frozen=True)
class Verdict:
    """Whether to keep a thing, until when it is known to live, and when to look again."""

    keep: bool
    expires_at: datetime | None = None
    check_at: datetime | None = None


def verdict(
    jobs: Collection[Any], job_ids: Iterable[str], at: datetime, recheck: timedelta
) -> Verdict:
    """Keep while any of ``job_ids`` exists; it then lives until the last of them expires.

    A job that is unfinished (or kept forever) keeps it with no expiry yet, looked at
    again after ``recheck``.
    """
    wanted = list(job_ids)
    if not wanted:
        return Verdict(keep=False)
    found = list(jobs.find({"_id": {"$in": wanted}}, {"status": 1, "expires_at": 1}))
    if not found:
        return Verdict(keep=False)
    expiries = [job.get("expires_at") for job in found]
    if any(job["status"] not in TERMINAL for job in found) or None in expiries:
        return Verdict(keep=True, expires_at=None, check_at=at + recheck)
    last = max(e for e in expiries if e is not None)
    return Verdict(keep=True, expires_at=last, check_at=max(last, at) + RECHECK_AFTER_EXPIRY)
