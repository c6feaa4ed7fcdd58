"""The ``jobline`` command: the whole stack (``up``) or one part of it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from jobline import cli_client
from jobline.settings import Settings

log = logging.getLogger("jobline")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic names the bad variable
        raise click.ClickException(f"invalid configuration: {exc}") from None


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group()
@click.version_option(package_name="jobline")
def main() -> None:
    """jobline: an asynchronous job pipeline (Flask API, Celery workers, MongoDB store)."""


for _command in cli_client.COMMANDS:
    main.add_command(_command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
# Each open event stream (a dashboard tab, `jobline submit --wait`) holds a thread
# for up to JOBLINE_STREAM_MAX_SECONDS, so leave room beside ordinary requests.
@click.option("--threads", default=32, show_default=True, type=click.IntRange(1, 256))
def api(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API under gunicorn."""
    from gunicorn.app.base import BaseApplication

    from jobline.api import create_app

    settings = _settings()

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-")
            self.cfg.set("graceful_timeout", 10)

        def load(self) -> Any:
            return create_app(settings)

    Server().run()


@main.command()
@click.option(
    "--concurrency",
    "-c",
    default=None,
    type=click.IntRange(1, 512),
    help="Processes running jobs [default: number of cores]",
)
@click.option(
    "--queues", "-Q", default="default", show_default=True, help="Comma-separated queues to consume"
)
@click.option("--hostname", "-n", default=None, help="Celery node name")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(concurrency: int | None, queues: str, hostname: str | None, loglevel: str) -> None:
    """Run one Celery worker against the configured broker and store."""
    from jobline.store import JobStore
    from jobline.worker import create_worker_app

    settings = _settings()
    _ensure_indexes(JobStore(settings))
    app = create_worker_app(settings)
    argv = ["worker", f"--loglevel={loglevel}", f"--queues={queues}", "--events"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


@main.command()
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--address", default="127.0.0.1", show_default=True)
def flower(port: int, address: str) -> None:
    """Run Flower, the operators' view of workers and tasks."""
    from jobline.queue import make_celery

    app = make_celery(_settings())
    app.start(["flower", f"--port={port}", f"--address={address}"])


@main.command()
@click.option(
    "--interval",
    default=None,
    type=click.FloatRange(0.1, 3600),
    help="Seconds between sweeps [default: JOBLINE_SWEEP_INTERVAL_SECONDS]",
)
def sweep(interval: float | None) -> None:
    """Hand on jobs whose worker vanished and republish lost messages, in a loop."""
    from jobline import sweeper

    _logging()
    settings = _settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sweeper.run(_pipeline(settings), interval or settings.sweep_interval_seconds, stop)


@main.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run Celery beat (RedBeat): fires recurring schedules; several may run, one leads."""
    from jobline.schedules import Schedules, configure

    settings = _settings()
    p = _pipeline(settings)
    configure(p.celery, settings, retry_forever=True)
    added, removed = Schedules(p).sync()
    click.echo(f"beat: schedules in step with MongoDB ({added} added, {removed} removed)")
    p.celery.start(["beat", f"--loglevel={loglevel}"])


def _pipeline(settings: Settings) -> Any:
    from jobline import jobs
    from jobline.pipeline import Pipeline
    from jobline.queue import make_celery
    from jobline.store import JobStore

    store = JobStore(settings)
    _ensure_indexes(store)
    return Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))


def _ensure_indexes(store: Any, wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            store.ensure_indexes()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise click.ClickException(f"MongoDB unreachable: {exc}") from None
            time.sleep(0.5)


@main.command()
@click.option("--api-port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--flower-port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Worker processes (Celery nodes) to start",
)
@click.option(
    "--concurrency",
    default=None,
    type=click.IntRange(1, 512),
    help="Job processes per worker [default: number of cores]",
)
@click.option(
    "--data-dir",
    default=".jobline",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
def up(
    api_port: int, flower_port: int, workers: int, concurrency: int | None, data_dir: Path
) -> None:
    """Start the whole stack on this machine; Ctrl-C or SIGTERM stops all of it."""
    from jobline.stack import Stack

    _logging()
    stack = Stack(data_dir.resolve(), api_port, flower_port, workers, concurrency)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start(os.environ)
        click.echo(stack.banner())
        failed = stack.watch(stopping)
    finally:
        click.echo("stopping jobline…", err=True)
        stack.stop()
    if failed:
        raise click.ClickException(f"{failed} exited unexpectedly; everything was stopped")
    sys.exit(0)
