"""Removing what has expired: a step of every sweep.

Job and workflow records past their ``expires_at`` are deleted by their TTL
indexes (store.expiry; MongoDB's own monitor does the same on a real server).
What belongs to a job (log lines, GridFS files and their chunks) carries a time
to look again instead, and this step looks at those due: a handful of indexed
reads a sweep, nothing per job.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from jobline.core.settings import Settings
from jobline.store.expiry import remove_expired
from jobline.store.files import FileStore
from jobline.store.logs import LogStore
from jobline.store.records import Job, now


def sweep(settings: Settings, db: Any) -> Counter[str]:
    """Remove expired jobs and workflows, the logs and files of jobs that are gone, and unused
    uploads past their time."""
    done = remove_expired(db, now())
    if logs := LogStore(db).sweep(now()):
        done["logs_removed"] = logs
    if files := FileStore.of(settings, db).sweep():
        done["files_removed"] = files
    return done


def forget(settings: Settings, db: Any, job: Job) -> None:
    """Remove the log and the files of a job just deleted (its inputs stay their owner's)."""
    LogStore(db).forget([job["_id"]])
    FileStore.of(settings, db).forget_outputs(job)
