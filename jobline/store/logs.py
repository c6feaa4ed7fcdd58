"""Job logs: the lines each attempt of a job wrote, in a collection of their own.

A line's ``_id`` is ``<job>:<attempt>:<seq>``, numbered without gaps from 0
within an attempt, so a page is one bounded index range (``job``, ``_id``):
the embedded SecantusDB reads every match of a query before its limit, and a
range of exactly ``limit`` ids keeps a page as cheap on a long log as on a
short one. Each attempt that logged has one record in ``job_log_attempts``
(written with its first lines), which says whether the log was capped and
when the sweeper should next ask whether its job still exists (see
``lifetimes``): a job that logs nothing writes nothing here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from jobline.store.lifetimes import verdict
from jobline.store.mongo import unavailable_as_error
from jobline.store.views import iso

DUPLICATE_KEY = 11000
# How many attempts' logs one sweep looks at.
SWEEP_BATCH = 100
# How often the sweeper asks whether the job of a log still exists, while it runs.
RECHECK = timedelta(hours=1)


def line_id(job_id: str, attempt: int, seq: int) -> str:
    """The ``_id`` of a line: sorts by attempt, then by the order it was written."""
    return f"{job_id}:{attempt:05d}:{seq:07d}"


def attempt_id(job_id: str, attempt: int) -> str:
    return f"{job_id}:{attempt:05d}"


def seq_of(line_key: str) -> int:
    return int(line_key.rsplit(":", 1)[1])


def encode_cursor(attempt: int, seq: int) -> str:
    raw = json.dumps({"a": attempt, "s": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The attempt and line a page continues after; ValueError if the cursor is not ours."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        attempt, seq = raw["a"], raw["s"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not (isinstance(attempt, int) and isinstance(seq, int)) or attempt < 1 or seq < -1:
        raise ValueError("invalid cursor")
    return attempt, seq


def line_view(line: dict[str, Any]) -> dict[str, Any]:
    """The public shape of a log line."""
    return {
        "time": iso(line["time"]),
        "attempt": line["attempt"],
        "level": line["level"],
        "stream": line["stream"],
        "message": line["message"],
    }


@dataclass(frozen=True)
class LogPage:
    items: list[dict[str, Any]]
    truncated: bool
    next_cursor: str | None


class LogStore:
    """The ``job_logs`` and ``job_log_attempts`` collections: every query on job logs."""

    def __init__(self, db: Database[Any], recheck: timedelta = RECHECK) -> None:
        self.lines: Collection[Any] = db["job_logs"]
        self.attempts: Collection[Any] = db["job_log_attempts"]
        self.jobs: Collection[Any] = db["jobs"]
        self.recheck = recheck

    @unavailable_as_error
    def ensure_indexes(self) -> None:
        self.lines.create_index([("job", ASCENDING), ("_id", ASCENDING)])
        self.attempts.create_index("check_at")
        # One record for each attempt that logged: what a job's delete finds its records by.
        self.attempts.create_index("job")

    @unavailable_as_error
    def append(self, lines: Sequence[dict[str, Any]], *, first: bool, at: datetime) -> None:
        """Store lines of one attempt (each with ``_id`` from :func:`line_id`) in one write.

        ``first``: the attempt's first lines, so its record is made too. A batch
        written again after a lost answer stores each line once.
        """
        if not lines:
            return
        job_id, attempt = lines[0]["job"], lines[0]["attempt"]
        if first:
            self.attempts.update_one(
                {"_id": attempt_id(job_id, attempt)},
                {
                    "$setOnInsert": {
                        "job": job_id,
                        "attempt": attempt,
                        "truncated": False,
                        "check_at": at + self.recheck,
                    }
                },
                upsert=True,
            )
        try:
            self.lines.insert_many(list(lines), ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    @unavailable_as_error
    def record_usage(self, job_id: str, attempt: int, used: int) -> None:
        """How many bytes of the job's log cap this attempt used (read by the next one)."""
        self.attempts.update_one({"_id": attempt_id(job_id, attempt)}, {"$set": {"bytes": used}})

    @unavailable_as_error
    def used_before(self, job_id: str, attempt: int) -> int:
        """Bytes of the log cap the job's earlier attempts used."""
        if attempt <= 1:
            return 0
        earlier = [attempt_id(job_id, a) for a in range(1, attempt)]
        found = self.attempts.find({"_id": {"$in": earlier}}, {"bytes": 1})
        return sum(int(record.get("bytes") or 0) for record in found)

    @unavailable_as_error
    def mark_truncated(self, job_id: str, attempt: int) -> None:
        self.attempts.update_one(
            {"_id": attempt_id(job_id, attempt)}, {"$set": {"truncated": True}}
        )

    @unavailable_as_error
    def page(
        self,
        job_id: str,
        attempts: int,
        *,
        finished: bool,
        attempt: int | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> LogPage:
        """Lines in the order written, ``limit`` at most, after ``cursor``.

        ``next_cursor`` is null only on the last page of a finished job: a
        running job's log may still grow, so its follower keeps the cursor.
        """
        first = attempt or 1
        last = attempt or attempts
        a, seq = decode_cursor(cursor) if cursor else (first, -1)
        if attempt is not None and a != attempt:
            raise ValueError("invalid cursor: it belongs to another attempt")
        found: list[dict[str, Any]] = []
        while len(found) < limit and a <= last:
            want = limit - len(found)
            query = {
                "job": job_id,
                "_id": {"$gt": line_id(job_id, a, seq), "$lte": line_id(job_id, a, seq + want)},
            }
            got = list(self.lines.find(query).sort("_id", ASCENDING))
            found += got
            if got:
                seq = seq_of(got[-1]["_id"])
            if len(got) < want:
                if a >= last:
                    break
                a, seq = a + 1, -1
        more = len(found) == limit or not finished
        return LogPage(
            items=[line_view(line) for line in found],
            truncated=self._truncated(job_id, range(first, last + 1)),
            next_cursor=encode_cursor(a, seq) if more else None,
        )

    def _truncated(self, job_id: str, attempts: range) -> bool:
        if not attempts:
            return False
        ids = [attempt_id(job_id, a) for a in attempts]
        return self.attempts.find_one({"_id": {"$in": ids}, "truncated": True}) is not None

    @unavailable_as_error
    def forget(self, job_ids: Sequence[str]) -> None:
        """Remove the logs of these jobs (deleted, or expired)."""
        if job_ids:
            self.lines.delete_many({"job": {"$in": list(job_ids)}})
            self.attempts.delete_many({"job": {"$in": list(job_ids)}})

    @unavailable_as_error
    def sweep(self, at: datetime) -> int:
        """Remove the logs whose job is gone, and schedule the next look at the rest."""
        due = list(self.attempts.find({"check_at": {"$lte": at}}).limit(SWEEP_BATCH))
        by_job: dict[str, list[str]] = {}
        for record in due:
            by_job.setdefault(record["job"], []).append(record["_id"])
        gone = []
        for job_id, record_ids in by_job.items():
            found = verdict(self.jobs, [job_id], at, self.recheck)
            if not found.keep:
                gone.append(job_id)
                continue
            self.attempts.update_many(
                {"_id": {"$in": record_ids}}, {"$set": {"check_at": found.check_at}}
            )
        self.forget(gone)
        return len(gone)
