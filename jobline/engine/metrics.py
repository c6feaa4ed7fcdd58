"""Prometheus metrics: what jobline counts, and how a process exposes them.

Counters are kept where the event happens, not derived from MongoDB at scrape
time: a job record is deleted or expires, so counts read from the store would
go backwards, and histograms of durations would mean scanning every job per
scrape. Processes that fork (gunicorn's workers, Celery's pool) use
prometheus-client's multiprocess mode: each process writes its values to files
in a directory private to the parent (``PROMETHEUS_MULTIPROC_DIR``, which
``jobline api`` and ``jobline worker --metrics-port`` create before anything
imports this module), and a scrape sums them. The API serves ``/metrics``;
each worker serves its own on ``--metrics-port``; Prometheus adds them up.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator

from celery import Celery
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobline.core.errors import BrokerUnavailable
from jobline.engine import queue

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_DURATIONS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

JOBS_SUBMITTED = Counter("jobline_jobs_submitted", "Jobs accepted for running", ["type"])
JOBS_SUCCEEDED = Counter("jobline_jobs_succeeded", "Jobs that ended with a result", ["type"])
JOBS_FAILED = Counter("jobline_jobs_failed", "Jobs that ended with an error", ["type"])
JOBS_CANCELLED = Counter("jobline_jobs_cancelled", "Unfinished jobs cancelled", ["type"])
JOBS_RETRIED = Counter(
    "jobline_jobs_retried", "Attempts queued again, by a retry policy or a client", ["type"]
)
WORKFLOWS_SUBMITTED = Counter("jobline_workflows_submitted", "Workflows accepted for running")
WORKFLOWS_FINISHED = Counter(
    "jobline_workflows_finished", "Workflows that ended, by outcome", ["outcome"]
)
WORKFLOWS_RETRIED = Counter("jobline_workflows_retried", "Failed or cancelled workflows run again")
JOB_DURATION = Histogram(
    "jobline_job_duration_seconds",
    "Run time of one attempt, from claim to end",
    ["type", "outcome"],
    buckets=_DURATIONS,
)
QUEUE_WAIT = Histogram(
    "jobline_job_queue_wait_seconds",
    "Time from when a job was due (submitted, scheduled or retried) until a worker claimed it",
    ["type", "queue"],
    buckets=_DURATIONS,
)
HTTP_LATENCY = Histogram(
    "jobline_http_request_duration_seconds",
    "HTTP requests by route (the URL rule, not the raw path), method and status",
    ["endpoint", "method", "status"],
)


def private_multiprocess_dir(kind: str) -> str:
    """Make a fresh directory for this process tree's metrics and point prometheus-client at it.

    Call before anything imports prometheus-client in a parent that forks; the
    directory is removed when the parent exits. Each jobline process gets its
    own, so two processes on one host never add up each other's values.
    """
    path = tempfile.mkdtemp(prefix=f"jobline-{kind}-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _source() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(*collectors: Collector) -> bytes:
    """This process's (or process tree's) metrics in the Prometheus text format."""
    out = generate_latest(_source())
    if collectors:
        extra = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            extra.register(collector)
        out += generate_latest(extra)
    return out


class QueueDepth(Collector):
    """Messages waiting in each queue, read from the broker at scrape time."""

    def __init__(self, celery: Celery, queues: Callable[[], Iterable[str]]) -> None:
        self.celery = celery
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "jobline_queue_depth", "Messages waiting in the queue", labels=["queue"]
        )
        up = GaugeMetricFamily("jobline_broker_up", "Whether the broker answered this scrape")
        try:
            for name in sorted(set(self.queues())):
                depth.add_metric([name], queue.queue_depth(self.celery, name))
            up.add_metric([], 1)
        except BrokerUnavailable:
            up.add_metric([], 0)
        yield depth
        yield up


def serve_worker_metrics(port: int, address: str = "127.0.0.1") -> None:
    """Serve the metrics of this worker and its pool processes over HTTP, in a thread."""
    start_http_server(port, addr=address, registry=_source())
