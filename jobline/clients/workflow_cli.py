"""``jobline workflow``: submit a workflow from a JSON file, follow it, cancel or retry it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobline.clients.cli import _print_json, connection_options

if TYPE_CHECKING:
    from jobline.clients.python import Client

WORKFLOW_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


@click.group()
def workflow() -> None:
    """Workflows: steps that run once the steps they need have succeeded."""


def _read(path: Path) -> dict[str, Any]:
    """A workflow file: ``{"steps": [...], "priority"?, "callback_url"?}`` or just the steps."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="FILE") from None
    if isinstance(body, list):
        body = {"steps": body}
    if not isinstance(body, dict) or not isinstance(body.get("steps"), list):
        raise click.BadParameter('expected {"steps": [...]} or a list of steps', param_hint="FILE")
    return body


def _line(workflow: dict[str, Any]) -> str:
    steps = "  ".join(
        f"{s['id']}:{s['status']}" + (f" {s['done']}/{s['total']}" if s.get("for_each") else "")
        for s in workflow["steps"]
    )
    return f"{workflow['status']:<9} {steps}"


@workflow.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Follow it until it ends; exit 1 unless it succeeded")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Seconds to wait")
@connection_options
def submit(client: Client, file: Path, wait: bool, timeout: float | None) -> None:
    """Submit the workflow in FILE (JSON): jobline workflow submit pipeline.json [--wait]."""
    body = _read(file)
    accepted = client.submit_workflow(
        body["steps"], priority=body.get("priority"), callback_url=body.get("callback_url")
    )
    if not wait:
        _print_json(accepted)
        return
    click.echo(f"workflow {accepted['id']} {accepted['status']}", err=True)
    done = client.wait_workflow(
        accepted["id"], timeout=timeout, on_change=lambda w: click.echo(_line(w), err=True)
    )
    _print_json(done)
    sys.exit(0 if done["status"] == "succeeded" else 1)


@workflow.command()
@click.argument("workflow_id")
@connection_options
def status(client: Client, workflow_id: str) -> None:
    """Show a workflow: its status and each step's status, jobs, result or error."""
    _print_json(client.get_workflow(workflow_id))


@workflow.command(name="list")
@click.option("--status", type=click.Choice(WORKFLOW_STATUSES), default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@connection_options
def list_workflows(client: Client, status: str | None, limit: int) -> None:
    """List workflows, newest first, one line each."""
    for item in client.list_workflows(status=status, limit=limit)["items"]:
        click.echo(f"{item['id']}  {_line(item)}")


@workflow.command()
@click.argument("workflow_id")
@connection_options
def cancel(client: Client, workflow_id: str) -> None:
    """Cancel a workflow: running step jobs are stopped, waiting steps never start."""
    _print_json(client.cancel_workflow(workflow_id))


@workflow.command()
@click.argument("workflow_id")
@connection_options
def retry(client: Client, workflow_id: str) -> None:
    """Run a failed or cancelled workflow's failed, cancelled and skipped steps again."""
    _print_json(client.retry_workflow(workflow_id))
