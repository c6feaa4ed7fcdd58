"""The store: every MongoDB query lives here, and every status change.

Jobs and their named transitions (``jobs``, built from ``transitions``,
``lists`` and ``recovery``), the record a job starts as (``records``), list
cursors (``paging``), API keys, schedules' records, and the public view of a
job (``views``). Imports the core only; the engine and the API build on it.
"""
