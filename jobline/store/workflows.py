"""Workflows' records: one document per workflow, its steps in an array, every change here.

A step is addressed by its position in ``steps`` (fixed at submission), so each
change is one conditional update on paths like ``steps.2.status``: no
``arrayFilters``, and the condition names the step's ``run`` (a retry starts a
new run) and the status it moves from. Fan-in is a counter: each member of a
fan-out that succeeds increments ``done``; the one that brings it to ``total``
checks its siblings' records and closes the step with a conditional update,
which only one caller can make. The record stays small (params, job ids and
results live in ``jobline.store.step_runs``), because every member updates it.
Every update increments ``version``, which cancel and retry use to change many
steps at once from exactly the state they read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from jobline.core import ids
from jobline.core.errors import InvalidTransition
from jobline.store.mongo import drop_index, journaled, mine, unavailable_as_error
from jobline.store.paging import Page, windowed
from jobline.store.records import now
from jobline.store.step_runs import StepRuns
from jobline.store.workflow_records import (
    ACTIVE,
    INDEXES,
    RETIRED_INDEXES,
    RETRYABLE,
    STEP_ACTIVE,
    STEP_ENDED,
    FlowStatus,
    StepStatus,
    Workflow,
    WorkflowNotFound,
    fresh_step,
    new_workflow,
    params_record,
    step_is,
)

__all__ = [
    "ACTIVE",
    "RETRYABLE",
    "STEP_ACTIVE",
    "STEP_ENDED",
    "FlowStatus",
    "StepStatus",
    "Workflow",
    "WorkflowNotFound",
    "WorkflowStore",
    "new_workflow",
    "params_record",
]


class WorkflowStore(StepRuns):
    """The ``workflows`` collection, and (from StepRuns) each step run's record and jobs."""

    def __init__(self, db: Database[Any], result_ttl: timedelta | None = None) -> None:
        super().__init__(db, result_ttl)
        self.workflows: Collection[Workflow] = db["workflows"]

    @unavailable_as_error
    def ensure_indexes(self) -> None:
        for keys in INDEXES:
            self.workflows.create_index(keys)
        for name in set(RETIRED_INDEXES) & set(self.workflows.index_information()):
            drop_index(self.workflows, name)
        self.workflows.create_index("expires_at", expireAfterSeconds=0)
        self.runs.create_index("expires_at", expireAfterSeconds=0)

    def _change(self, query: dict[str, Any], changes: dict[str, Any], **more: Any) -> bool:
        """One conditional update that also bumps ``version``; whether it matched."""
        update: dict[str, Any] = {"$set": {**changes, "updated_at": now()}, "$inc": {"version": 1}}
        for op, fields in more.items():
            update.setdefault(f"${op}", {}).update(fields)
        return self.workflows.update_one(query, update).modified_count == 1

    # -- submission, reading, lists ----------------------------------------------------

    @unavailable_as_error
    def insert(self, workflow: Workflow) -> Workflow:
        # Journaled, as its first jobs are: the 202 promises the workflow survives a crash.
        journaled(self.workflows).insert_one(workflow)
        return workflow

    @unavailable_as_error
    def discard(self, workflow_id: str, job_ids: Sequence[str]) -> None:
        """Take back a workflow whose first jobs could not be published."""
        if job_ids:
            self.jobs.delete_many(
                {"_id": {"$gte": min(job_ids), "$lte": max(job_ids)}, "workflow_id": workflow_id}
            )
        self.delete_runs(workflow_id)
        self.workflows.delete_one({"_id": workflow_id})

    @unavailable_as_error
    def find(self, workflow_id: str, owner: str | None = None) -> Workflow | None:
        if not ids.is_id(workflow_id):
            return None
        return self.workflows.find_one(mine({"_id": workflow_id}, owner))

    def get(self, workflow_id: str, owner: str | None = None) -> Workflow:
        """The workflow (``owner``'s unless None); WorkflowNotFound otherwise."""
        found = self.find(workflow_id, owner)
        if found is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        return found

    @unavailable_as_error
    def list(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: str | None = None,
        owner: str | None = None,
    ) -> Page:
        """Workflows newest first, a page at a time; ValueError for a bad cursor.

        Read a status at a time in time windows, as the jobs' lists are: SecantusDB
        scans the whole collection for a sort on _id alone.
        """
        statuses = [status] if status is not None else [str(s) for s in FlowStatus]
        partitions = [mine({"status": s}, owner) for s in statuses]
        return windowed(self.workflows, partitions, limit, cursor, int(now().timestamp() * 1000))

    @unavailable_as_error
    def stalled(self, older_than: timedelta, limit: int = 100) -> Iterator[Workflow]:
        """Unfinished workflows nothing has changed for ``older_than``: the sweeper looks."""
        cutoff = now() - older_than
        # A query a status: SecantusDB reads the whole collection for a $in (see
        # Recovery.stale_waiting); each equality rides the status index.
        for status in ACTIVE:
            found = list(
                self.workflows.find({"status": status, "updated_at": {"$lt": cutoff}}).limit(limit)
            )
            yield from found
            limit -= len(found)
            if limit <= 0:
                return

    @unavailable_as_error
    def delete(self, workflow_id: str, owner: str | None = None) -> bool:
        """Remove a workflow's record and its steps' (its jobs stay, as jobs)."""
        deleted = self.workflows.delete_one(mine({"_id": workflow_id}, owner)).deleted_count == 1
        if deleted:
            self.delete_runs(workflow_id)
        return deleted

    # -- steps ----------------------------------------------------------------------

    @unavailable_as_error
    def release_step(self, workflow_id: str, i: int, run: int, total: int) -> bool:
        """Move a waiting step to queued, with ``total`` jobs; True exactly once per run.

        The run's record (its job ids) is written first, and its jobs after
        this update, under those ids: whoever finds the step half released
        (a crash, a concurrent caller) completes the same release.
        """
        return self._change(
            {"_id": workflow_id, "status": {"$in": ACTIVE}, **step_is(i, run, StepStatus.WAITING)},
            {
                f"steps.{i}.status": str(StepStatus.QUEUED),
                f"steps.{i}.total": total,
                f"steps.{i}.done": 0,
            },
        )

    @unavailable_as_error
    def counters(self, workflow_id: str) -> Workflow | None:
        """The workflow's status and its steps' statuses, runs and counts; nothing else."""
        fields = ("id", "status", "run", "done", "total", "for_each")
        projection = {"status": 1, "version": 1, **{f"steps.{f}": 1 for f in fields}}
        return self.workflows.find_one({"_id": workflow_id}, projection)

    @unavailable_as_error
    def step_started(self, workflow_id: str, i: int, run: int) -> bool:
        """A job of a queued step started: the step (and a queued workflow) is running."""
        t = now()
        moved = self._change(
            {"_id": workflow_id, "status": {"$in": ACTIVE}, **step_is(i, run, StepStatus.QUEUED)},
            {f"steps.{i}.status": str(StepStatus.RUNNING), f"steps.{i}.started_at": t},
        )
        if moved:
            self._change(
                {"_id": workflow_id, "status": str(FlowStatus.QUEUED)},
                {"status": str(FlowStatus.RUNNING), "started_at": t},
            )
        return moved

    @unavailable_as_error
    def count_member(self, workflow_id: str, i: int, run: int) -> bool:
        """Count one succeeded member of a fan-out (its worker does, once, after recording it)."""
        query = {"_id": workflow_id, **step_is(i, run, *STEP_ACTIVE)}
        return self._change(query, {}, inc={f"steps.{i}.done": 1})

    @unavailable_as_error
    def recount(self, workflow_id: str, i: int, run: int, succeeded: int) -> bool:
        """Raise a fan-out's count to the members found succeeded (a worker died uncounted)."""
        query = {"_id": workflow_id, **step_is(i, run, *STEP_ACTIVE)}
        query[f"steps.{i}.done"] = {"$lt": succeeded}
        return self._change(query, {f"steps.{i}.done": succeeded})

    @unavailable_as_error
    def end_step(
        self,
        workflow_id: str,
        i: int,
        run: int,
        status: StepStatus,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        done: int | None = None,
        started: bool = True,
    ) -> bool:
        """Record how a step ended; True for the one caller whose update decided it.

        ``done``: only once that many members of a fan-out are counted. A
        result is written to the run's record first, so a succeeded step
        always has it (a second caller writes the same one, then matches nothing).
        ``started`` False: the step ends from waiting, without jobs (an empty
        fan-out, or items that cannot run).
        """
        query: dict[str, Any] = {"_id": workflow_id, "status": {"$in": ACTIVE}}
        query |= step_is(i, run, *STEP_ACTIVE) if started else step_is(i, run, StepStatus.WAITING)
        if done is not None:
            query[f"steps.{i}.done"] = {"$gte": done}
        if status is StepStatus.SUCCEEDED:
            self.set_result(workflow_id, i, run, result)
        changes = {
            f"steps.{i}.status": str(status),
            f"steps.{i}.error": error,
            f"steps.{i}.finished_at": now(),
        }
        return self._change(query, changes)

    @unavailable_as_error
    def skip_step(self, workflow_id: str, i: int, run: int) -> bool:
        """A waiting step one of whose needs failed will never run."""
        return self._change(
            {"_id": workflow_id, **step_is(i, run, StepStatus.WAITING)},
            {f"steps.{i}.status": str(StepStatus.SKIPPED), f"steps.{i}.finished_at": now()},
        )

    # -- the workflow as a whole -----------------------------------------------------

    def _expiry(self, t: datetime) -> datetime | None:
        return t + self.result_ttl if self.result_ttl else None

    @unavailable_as_error
    def conclude(self, workflow_id: str, status: FlowStatus, error: dict[str, Any] | None) -> bool:
        """End an unfinished workflow whose steps have all ended; True exactly once."""
        t = now()
        ended = self._change(
            {"_id": workflow_id, "status": {"$in": ACTIVE}},
            {
                "status": str(status),
                "error": error,
                "finished_at": t,
                "expires_at": self._expiry(t),
            },
        )
        if ended and self.result_ttl:
            self.expire_runs(workflow_id, self._expiry(t))
        return ended

    @unavailable_as_error
    def cancel(self, workflow: Workflow) -> bool:
        """Cancel an unfinished workflow and its unfinished steps, from the state read."""
        t = now()
        changes: dict[str, Any] = {
            "status": str(FlowStatus.CANCELLED),
            "error": None,
            "finished_at": t,
            "expires_at": self._expiry(t),
        }
        for i, step in enumerate(workflow["steps"]):
            if StepStatus(step["status"]) not in STEP_ENDED:
                changes[f"steps.{i}.status"] = str(StepStatus.CANCELLED)
                changes[f"steps.{i}.finished_at"] = t
        query = {"_id": workflow["_id"], "status": {"$in": ACTIVE}, "version": workflow["version"]}
        cancelled = self._change(query, changes)
        if cancelled and self.result_ttl:
            self.expire_runs(workflow["_id"], self._expiry(t))
        return cancelled

    @unavailable_as_error
    def restart(self, workflow: Workflow) -> Workflow:
        """Run a failed or cancelled workflow's failed, cancelled and skipped steps again.

        Succeeded steps keep their results and jobs. InvalidTransition otherwise.
        """
        if workflow["status"] not in RETRYABLE:
            raise InvalidTransition(
                f"workflow {workflow['_id']} is {workflow['status']}; "
                "only failed or cancelled workflows can be retried"
            )
        changes: dict[str, Any] = {
            "error": None,
            "finished_at": None,
            "expires_at": None,
            "status": str(FlowStatus.QUEUED),
        }
        for i, step in enumerate(workflow["steps"]):
            if step["status"] == StepStatus.SUCCEEDED:
                changes["status"] = str(FlowStatus.RUNNING)
            else:
                changes |= {f"steps.{i}.{k}": v for k, v in fresh_step(step["run"] + 1).items()}
        query = {"_id": workflow["_id"], "version": workflow["version"]}
        if not self._change(query, changes):
            raise InvalidTransition(f"workflow {workflow['_id']} changed while being retried")
        if self.result_ttl:
            self.expire_runs(workflow["_id"], None)
        return self.get(workflow["_id"])

    @unavailable_as_error
    def record_webhook(
        self,
        workflow_id: str,
        *,
        last_status: int | None,
        last_error: str | None,
        delivered: bool,
    ) -> None:
        """Count one webhook delivery attempt on the workflow (not a state change: no version)."""
        t = now()
        changes: dict[str, Any] = {
            "webhook.last_status": last_status,
            "webhook.last_error": last_error,
            "webhook.last_attempt_at": t,
        }
        if delivered:
            changes["webhook.delivered_at"] = t
        self.workflows.update_one(
            {"_id": workflow_id}, {"$set": changes, "$inc": {"webhook.attempts": 1}}
        )
