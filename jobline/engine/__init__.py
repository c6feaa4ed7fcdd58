"""The engine: Celery and the work around a job's run.

The Celery app and publishing (``queue``), the operations clients ask for
(``pipeline``), the task that runs a job (``worker``, with its ``heartbeat``),
the tasks a worker registers (``tasks``), the ``sweeper``, delayed jobs
(``delays``), recurring ``schedules``, ``webhooks``, live ``events`` and
Prometheus ``metrics``. Imports the store, the catalogue and the core; never
the API.
"""
