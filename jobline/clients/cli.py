"""Client commands of ``jobline``: submit, status, list, cancel and retry, against a running API."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from jobline.clients.options import data_dir_option
from jobline.core import local_stack

if TYPE_CHECKING:
    from jobline.clients.python import Client

F = TypeVar("F", bound=Callable[..., Any])

# `submit --wait --timeout` past its time exits as timeout(1) does.
WAIT_TIMED_OUT = 124
STATUSES = ("queued", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled")


def connection_options(command: F) -> F:
    """``--url`` and ``--api-key``, passed to the command as a ready Client."""

    @click.option(
        "--url",
        envvar="JOBLINE_URL",
        default=None,
        help="The jobline API [env JOBLINE_URL; default: the `jobline up` running on "
        f"--data-dir, else {local_stack.DEFAULT_API_URL}]",
    )
    @click.option("--api-key", envvar="JOBLINE_API_KEY", default=None, help="[env JOBLINE_API_KEY]")
    @data_dir_option
    @functools.wraps(command)
    def wrapper(url: str | None, api_key: str | None, data_dir: Path, **kwargs: Any) -> Any:
        from jobline.clients.python import ApiError, Client, ClientError, WaitTimeout

        url, origin = local_stack.api_url(data_dir, url)
        click.echo(f"jobline: API {url} ({origin})", err=True)
        with Client(url, api_key=api_key) as client:
            try:
                return command(client, **kwargs)
            except ApiError as exc:
                raise click.ClickException(_describe(exc.problem)) from None
            except WaitTimeout as exc:
                click.echo(f"Error: {exc}", err=True)
                sys.exit(WAIT_TIMED_OUT)
            except ClientError as exc:
                raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _describe(problem: dict[str, Any]) -> str:
    lines = [f"{problem.get('status')} {problem.get('title')}: {problem.get('detail', '')}"]
    for error in problem.get("errors") or []:
        loc = ".".join(str(p) for p in error.get("loc", []))
        lines.append(f"  {loc}: {error.get('msg')}")
    return "\n".join(lines)


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; each value is JSON where it parses (55, true, [1]), else a string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="PARAMS")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def upload_files(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Each ``key=@path`` value uploaded, and replaced by the file's id (a FileRef)."""
    out = dict(params)
    for key, value in params.items():
        if isinstance(value, str) and value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise click.BadParameter(f"{key}=@{path}: no such file", param_hint="PARAMS")
            uploaded = client.upload(path)
            click.echo(f"uploaded {path} as file {uploaded['id']}", err=True)
            out[key] = uploaded["id"]
    return out


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.command()
@click.argument("type")
@click.argument("params", nargs=-1)
@click.option(
    "--wait", is_flag=True, help="Show progress until the job ends; exit 1 unless it succeeded"
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help=f"With --wait: seconds to wait at most (then exit {WAIT_TIMED_OUT}, the job goes on)",
)
@connection_options
def submit(
    client: Client, type: str, params: tuple[str, ...], wait: bool, timeout: float | None
) -> None:
    """Submit a job: jobline submit bmi name=Ada weight=55 height=170 [--wait].

    A value ``@PATH`` uploads that file and passes its id: jobline submit align fasta=@reads.fa
    """
    job = client.submit(type, upload_files(client, parse_params(params)))
    if not wait:
        _print_json(job)
        return
    click.echo(f"job {job['id']} {job['status']}", err=True)
    done = _wait_with_bar(client, job["id"], timeout)
    _print_json(done)
    sys.exit(0 if done["status"] == "succeeded" else 1)


def _wait_with_bar(client: Client, job_id: str, timeout: float | None) -> dict[str, Any]:
    """Follow the job, drawing a bar on a terminal and one line per change elsewhere."""
    if not sys.stderr.isatty():
        last = ""

        def on_change(job: dict[str, Any]) -> None:
            nonlocal last
            line = f"{job.get('status')} {_percent(job)}%"
            if line != last:
                click.echo(line, err=True)
                last = line

        done = client.wait(job_id, timeout=timeout, on_progress=on_change)
        on_change(done)
        return done
    with click.progressbar(length=100, label="queued", file=sys.stderr) as bar:

        def on_progress(job: dict[str, Any]) -> None:
            bar.label = str(job.get("status", ""))
            bar.update(_percent(job) - bar.pos)

        done = client.wait(job_id, timeout=timeout, on_progress=on_progress)
        on_progress(done)
    return done


def _percent(job: dict[str, Any]) -> int:
    return int(round(float(job.get("progress") or 0) * 100))


@click.command()
@click.argument("job_id")
@connection_options
def status(client: Client, job_id: str) -> None:
    """Show a job: its status, progress and result or error."""
    _print_json(client.get(job_id))


@click.command(name="list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--type", "type_", default=None, help="Only jobs of this type")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON")
@connection_options
def list_jobs(
    client: Client, status: str | None, type_: str | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    page = client.list(status=status, type=type_, limit=limit)
    if as_json:
        _print_json(page)
        return
    for job in page["items"]:
        progress = f"{float(job.get('progress') or 0) * 100:.0f}%"
        outcome = job.get("result") if job["status"] == "succeeded" else job.get("error")
        summary = json.dumps(outcome)[:60] if outcome else ""
        click.echo(
            f"{job['id']}  {job['type']:<12} {job['status']:<10} {progress:>4}  "
            f"{job.get('created_at') or '':<24}  {summary}"
        )


@click.command()
@click.argument("job_id")
@connection_options
def cancel(client: Client, job_id: str) -> None:
    """Cancel a job (a running one is stopped)."""
    _print_json(client.cancel(job_id))


@click.command()
@click.argument("job_id")
@connection_options
def retry(client: Client, job_id: str) -> None:
    """Run a failed or cancelled job again."""
    _print_json(client.retry(job_id))


def _print_line(line: dict[str, Any]) -> None:
    click.echo(f"{line['time']} {line['level']:<8} {line['stream']:<6} {line['message']}")


@click.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends")
@click.option("--attempt", type=click.IntRange(min=1), default=None, help="Only this attempt")
@connection_options
def logs(client: Client, job_id: str, follow: bool, attempt: int | None) -> None:
    """Print what a job logged: time, level, stream (log, stdout, stderr) and message."""
    lines = (
        client.follow_logs(job_id, attempt=attempt)
        if follow
        else client.logs(job_id, attempt=attempt)
    )
    for line in lines:
        _print_line(line)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@connection_options
def upload(client: Client, path: Path) -> None:
    """Upload a file for jobs to read; prints its record (its id is what a FileRef takes)."""
    _print_json(client.upload(path))


@click.command(name="files")
@click.option("--kind", type=click.Choice(("upload", "output")), default=None,
              help="Only uploads, or only the files jobs made")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON")
@connection_options
def list_files(client: Client, kind: str | None, limit: int, as_json: bool) -> None:
    """List files, newest first: uploads and the files jobs made."""
    page = client.list_files(kind=kind, limit=limit)
    if as_json:
        _print_json(page)
        return
    for record in page["items"]:
        click.echo(
            f"{record['id']}  {record.get('kind') or '-':<6}  {record['size']:>10}  "
            f"{record.get('created_at') or '':<24}  {record['name']}"
        )


@click.command()
@click.argument("job_id")
@click.argument("name")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: NAME, here)",
)
@connection_options
def download(client: Client, job_id: str, name: str, output: Path | None) -> None:
    """Download a file a job made."""
    target = client.download(job_id, name, output)
    click.echo(f"saved {target}", err=True)


COMMANDS = (submit, status, list_jobs, cancel, retry, logs, upload, list_files, download)
