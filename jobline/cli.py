"""The ``jobline`` command: the whole stack (``up``) or one part of it."""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import click

from jobline import operators
from jobline.clients import cli as cli_client
from jobline.clients import workflow_cli
from jobline.clients.options import data_dir_option, ensure_indexes, settings_beside
from jobline.core import local_stack
from jobline.core.settings import Settings
from jobline.local.supervisor import RestartPolicy

log = logging.getLogger("jobline")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic names the bad variable
        raise click.ClickException(f"invalid configuration: {exc}") from None


def _logging(settings: Settings | None = None) -> None:
    from jobline.core import logs

    logs.configure(settings or _settings())


def _private_metrics_dir(kind: str) -> str:
    """A fresh directory for the metrics of this process and the ones it forks.

    prometheus-client reads PROMETHEUS_MULTIPROC_DIR when it is first imported,
    so this runs before anything imports it. Each jobline process gets its own,
    so two on one host never add up each other's values.
    """
    path = tempfile.mkdtemp(prefix=f"jobline-{kind}-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
@click.version_option(package_name="jobline")
def main() -> None:
    """jobline: an asynchronous job pipeline (Flask API, Celery workers, MongoDB store)."""


for _command in (*cli_client.COMMANDS, *operators.COMMANDS):
    main.add_command(_command)
main.add_command(workflow_cli.workflow)


# How long a stopping gunicorn worker may finish its requests before it is killed.
GRACEFUL_TIMEOUT_SECONDS = 10


def _streams_end_on_sigterm(worker: Any) -> None:
    """A gunicorn worker told to stop ends its event streams first, then stops as gunicorn does.

    Otherwise every open board or `--wait` would hold the worker for its whole
    graceful timeout, and then be cut off mid-stream.
    """
    from jobline.api import events

    stop = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        events.end_streams()
        if callable(stop):
            stop(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
# Each open event stream (a dashboard tab, `jobline submit --wait`) holds a thread
# for up to JOBLINE_STREAM_MAX_SECONDS, so leave room beside ordinary requests.
@click.option("--threads", default=32, show_default=True, type=click.IntRange(1, 256))
@data_dir_option
def api(host: str, port: int, workers: int, threads: int, data_dir: Path) -> None:
    """Serve the HTTP API under gunicorn."""
    settings = settings_beside(data_dir, logged=True).settings
    if not settings.auth and not _loopback(host):
        raise click.ClickException(
            f"JOBLINE_AUTH=off is only allowed on a loopback address, not {host}; "
            "create keys with `jobline keys create` and leave auth on"
        )
    # Before gunicorn forks, so its workers' metrics add up in one /metrics.
    _private_metrics_dir("api")
    _logging(settings)

    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from jobline.api import create_app, payloads

    class JsonLogs(Logger):  # type: ignore[misc]
        """gunicorn's messages through jobline's JSON handler; the app logs each request."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                logger.handlers.clear()
                logger.propagate = True

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("logger_class", JsonLogs)
            self.cfg.set("graceful_timeout", GRACEFUL_TIMEOUT_SECONDS)
            self.cfg.set("post_worker_init", _streams_end_on_sigterm)
            # Long URIs reach the app, which refuses them as a problem document.
            self.cfg.set("limit_request_line", payloads.GUNICORN_REQUEST_LINE)
            # gunicorn's control socket (for gunicornc) sits at one path in $HOME, which
            # every API on the machine would share and unlink for the others on stopping.
            self.cfg.set("control_socket_disable", True)

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
@click.option(
    "--loglevel",
    "-l",
    default=None,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level [default: JOBLINE_LOG_LEVEL]",
)
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Serve this worker's Prometheus metrics on this port [default: not served]",
)
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option(
    "--sweep/--no-sweep",
    default=True,
    show_default=True,
    help="Take turns with the other workers at the sweeper's work",
)
@data_dir_option
def worker(
    concurrency: int | None,
    queues: str,
    hostname: str | None,
    loglevel: str | None,
    metrics_port: int | None,
    metrics_address: str,
    sweep: bool,
    data_dir: Path,
) -> None:
    """Run one Celery worker against the configured broker and store."""
    if metrics_port:
        _private_metrics_dir("worker")  # before the pool forks and anything imports the client
    from jobline.engine import metrics, old_keys
    from jobline.engine.tasks import create_worker_app
    from jobline.store.jobs import JobStore

    resolved = settings_beside(data_dir, logged=True, level=loglevel and loglevel.upper())
    settings = resolved.settings
    ensure_indexes(JobStore(settings), resolved, wait=30)
    app = create_worker_app(settings, sweep=sweep)
    _logging(settings)  # until Celery sets logging up itself, for the line adopt() may write
    old_keys.adopt(app, queues.split(","))
    if metrics_port:
        metrics.serve_worker_metrics(metrics_port, metrics_address)
    argv = ["worker", f"--loglevel={loglevel or settings.log_level}", f"--queues={queues}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


@main.command()
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--address", default="127.0.0.1", show_default=True)
@data_dir_option
def flower(port: int, address: str, data_dir: Path) -> None:
    """Run Flower, the operators' view of workers and tasks (behind basic auth)."""
    from jobline.engine.queue import make_celery

    settings = settings_beside(data_dir).settings
    credentials = settings.flower_basic_auth
    if credentials is None or ":" not in credentials.get_secret_value():
        raise click.ClickException(
            "Flower needs credentials: set JOBLINE_FLOWER_BASIC_AUTH=user:password"
        )
    # Flower's --basic-auth option, given through Flower's own variable so that
    # the password does not show in the process list.
    os.environ["FLOWER_BASIC_AUTH"] = credentials.get_secret_value()
    app = make_celery(settings)
    app.start(["flower", f"--port={port}", f"--address={address}"])


@main.command()
@click.option(
    "--interval",
    default=None,
    type=click.FloatRange(0.1, 3600),
    help="Seconds between sweeps [default: JOBLINE_SWEEP_INTERVAL_SECONDS]",
)
@data_dir_option
def sweep(interval: float | None, data_dir: Path) -> None:
    """Hand on jobs whose worker vanished and republish lost messages, in a loop."""
    from jobline.engine import sweeper

    resolved = settings_beside(data_dir, logged=True)
    settings = resolved.settings
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sweeper.run(_pipeline(resolved), interval or settings.sweep_interval_seconds, stop)


@main.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@data_dir_option
def beat(loglevel: str, data_dir: Path) -> None:
    """Run Celery beat (RedBeat): fires recurring schedules; several may run, one leads."""
    from jobline.engine.schedules import Schedules, configure

    resolved = settings_beside(data_dir)
    settings = resolved.settings
    p = _pipeline(resolved)
    configure(p.celery, settings, retry_forever=True)
    added, removed = Schedules(p).sync()
    click.echo(f"beat: schedules in step with MongoDB ({added} added, {removed} removed)")
    p.celery.start(["beat", f"--loglevel={loglevel}"])


def _pipeline(resolved: local_stack.Resolved) -> Any:
    from jobline import jobs
    from jobline.engine.pipeline import Pipeline
    from jobline.engine.queue import make_celery
    from jobline.store.jobs import JobStore

    settings = resolved.settings
    store = JobStore(settings)
    ensure_indexes(store, resolved, wait=30)
    return Pipeline(settings, store, make_celery(settings), jobs.load(settings.job_module_list))


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
    envvar="JOBLINE_DATA_DIR",
    default=str(local_stack.DEFAULT_DATA_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the servers keep their data and logs [env JOBLINE_DATA_DIR]",
)
@click.option(
    "--restart-limit",
    envvar="JOBLINE_RESTART_LIMIT",
    default=RestartPolicy.max_exits,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="A process that exits this many times within --restart-within is not started "
    "again, and everything stops [env JOBLINE_RESTART_LIMIT]",
)
@click.option(
    "--restart-within",
    envvar="JOBLINE_RESTART_WITHIN_SECONDS",
    default=RestartPolicy.within,
    show_default=True,
    type=click.FloatRange(1, 7 * 86400),
    help="Seconds over which --restart-limit counts exits [env JOBLINE_RESTART_WITHIN_SECONDS]",
)
def up(
    api_port: int,
    flower_port: int,
    workers: int,
    concurrency: int | None,
    data_dir: Path,
    restart_limit: int,
    restart_within: float,
) -> None:
    """Start the whole stack on this machine; Ctrl-C or SIGTERM stops all of it."""
    from jobline.local.servers import ServerError
    from jobline.local.stack import Stack

    _logging()
    policy = RestartPolicy(max_exits=restart_limit, within=restart_within)
    stack = Stack(data_dir.resolve(), api_port, flower_port, workers, concurrency,
                  restart_policy=policy)  # fmt: skip
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start(os.environ)
        click.echo(stack.banner())
        failed = stack.watch(stopping)
    except ServerError as exc:  # a port taken, a stack already running there
        raise click.ClickException(str(exc)) from None
    finally:
        click.echo("stopping jobline…", err=True)
        stack.stop()
    if failed:
        raise click.ClickException(f"{failed}; everything was stopped")
    sys.exit(0)
