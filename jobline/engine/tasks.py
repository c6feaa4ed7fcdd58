"""Every Celery task a worker runs, registered in one place on the worker's app.

The task modules (``worker``, ``webhooks``, ``schedules``) hold plain
functions and never import this one, so nothing imports its way back here.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.app import trace

from jobline import jobs
from jobline.core import logs
from jobline.core.errors import Unavailable
from jobline.core.settings import Settings
from jobline.engine import program_output, schedules, webhooks
from jobline.engine.healing import healing_step
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import RUN_TASK, make_celery
from jobline.engine.runtime import Runtime
from jobline.engine.worker import JobTask, progression, run_job
from jobline.engine.workflows.progress import ADVANCE_TASK
from jobline.store.workflows import WorkflowStore

# Celery's loggers of a line for every task (received; succeeded, retried, failed).
CELERY_TASK_LINES = ("celery.worker.strategy", "celery.app.trace")


class JobTaskLines(logging.Filter):
    """Leaves out Celery's INFO line for each job's task received and succeeded.

    It said again, by task id, what the job's own lines say with its fields
    (started; succeeded, failed, stopped, or a delivery that ran nothing): two
    of a job's six records at INFO. Celery's lines for its other tasks
    (webhooks, schedule fires, workflow steps), a job's retry and every
    warning and error stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)  # the task's fields, as Celery passes them
        return not (
            record.msg in (trace.LOG_RECEIVED, trace.LOG_SUCCESS)
            and isinstance(data, dict)
            and data.get("name") == RUN_TASK
        )


_job_task_lines = JobTaskLines()


def create_worker_app(settings: Settings, sweep: bool = True) -> Celery:
    """The Celery app of a worker process, with every task registered (and the sweeper,
    unless ``sweep`` is off)."""
    app = make_celery(settings)
    runtime = Runtime(settings, jobs.load(settings.job_module_list))
    JobTask.runtime = runtime
    # Every worker stands ready to sweep, so crash recovery needs no process of its own.
    if sweep:
        app.steps["worker"].add(healing_step(runtime))

    @signals.worker_process_init.connect(weak=False)
    def _capture_program_output(**_: Any) -> None:
        # Each pool process runs one job at a time: its descriptors 1 and 2 can be the job's.
        program_output.install()

    @signals.setup_logging.connect(weak=False)
    def _json_logs(loglevel: int | str | None = None, **_: Any) -> None:
        # Connected, this replaces Celery's own logging set-up with ours.
        configure_logs(settings, loglevel)

    @app.task(name=RUN_TASK, bind=True, base=JobTask, max_retries=None)
    def run(self: JobTask, job_id: str, record: dict[str, Any] | None = None) -> str:
        return run_job(self, runtime, job_id, record)

    @app.task(
        name=webhooks.DELIVER_TASK,
        autoretry_for=(webhooks.DeliveryFailed,),
        retry_backoff=True,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=settings.webhook_max_retries,
    )
    def deliver_webhook(job_id: str, url: str, body: str) -> int | None:
        return webhooks.deliver(runtime.settings, runtime.store, job_id, url, body)

    @app.task(
        name=webhooks.WORKFLOW_DELIVER_TASK,
        autoretry_for=(webhooks.DeliveryFailed,),
        retry_backoff=True,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=settings.webhook_max_retries,
    )
    def deliver_workflow_webhook(workflow_id: str, url: str, body: str) -> int | None:
        flows = WorkflowStore(runtime.store.db)
        return webhooks.deliver(runtime.settings, flows, workflow_id, url, body)

    # A fire is acknowledged on receipt: a killed worker skips one run, never makes two.
    @app.task(
        name=schedules.FIRE_TASK,
        acks_late=False,
        autoretry_for=(Unavailable,),
        max_retries=3,
        retry_backoff=True,
    )
    def schedule_fire(schedule_id: str) -> str | None:
        pipeline = Pipeline(runtime.settings, runtime.store, app, runtime.catalogue)
        return schedules.fire(pipeline, schedule_id)

    @app.task(name=ADVANCE_TASK, autoretry_for=(Unavailable,), max_retries=3, retry_backoff=True)
    def advance_workflow(workflow_id: str) -> None:
        # Idempotent: every change it makes is conditional; the sweeper repeats it if lost.
        progression(app, runtime, inline=True).advance(workflow_id)

    _ = (run, deliver_webhook, deliver_workflow_webhook, advance_workflow, schedule_fire)
    return app


def configure_logs(settings: Settings, loglevel: int | str | None) -> None:
    """The worker's logs, at the level it was started with (--loglevel)."""
    if isinstance(loglevel, int):
        loglevel = logging.getLevelName(loglevel)
    logs.configure(settings.model_copy(update={"log_level": loglevel or settings.log_level}))
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # all kept at DEBUG
        for name in CELERY_TASK_LINES:
            logging.getLogger(name).addFilter(_job_task_lines)
