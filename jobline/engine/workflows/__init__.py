"""Workflows: steps run as ordinary jobs, released as their needs succeed.

``spec`` checks a submitted graph; ``progress`` moves a workflow on when a
step job starts or ends (release, fan-out, fan-in, failure and skipped
dependents, the end); ``operations`` are what clients ask (submit, cancel,
retry, delete); ``repair`` is the sweeper's pass for workflows a crash left
behind. Every record change goes through ``jobline.store.workflows``.
"""
