"""Operators' commands on the store itself, not through the API: API keys, and the owner
of jobs made with auth off (``jobline keys …``, ``jobline jobs adopt``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from jobline.clients.options import data_dir_option, ensure_indexes, settings_beside
from jobline.core.errors import JoblineError


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored hashed in MongoDB)."""


def _keystore(data_dir: Path) -> Any:
    from jobline.store.jobs import JobStore
    from jobline.store.keys import KeyStore

    resolved = settings_beside(data_dir)
    store = KeyStore(JobStore(resolved.settings).db)
    # Not long: the store of a running stack answers at once; a wrong URL should fail fast.
    ensure_indexes(store, resolved, wait=2)
    return store


def _key_name(_ctx: Any, _param: Any, value: str) -> str:
    from jobline.store.keys import NAME_PATTERN

    if not re.match(NAME_PATTERN, value):
        raise click.BadParameter("1-64 letters, digits, '_', '.', '@' or '-'")
    return value


@keys.command("create")
@click.option("--name", required=True, callback=_key_name, help="Who the key is for")
@click.option("--admin", is_flag=True, help="The key sees and changes every owner's jobs")
@data_dir_option
def keys_create(name: str, admin: bool, data_dir: Path) -> None:
    """Create a key and print it; it is shown this once and stored only hashed."""
    try:
        key = _keystore(data_dir).create(name, admin=admin)
    except JoblineError as exc:
        raise click.ClickException(str(exc)) from None
    kind = "an admin key" if admin else "a key"
    click.echo(f"created {kind} for {name}; store it now, it is not shown again:")
    click.echo(key)


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path) -> None:
    """Names, admin flags and dates of every key (never the keys themselves)."""
    rows = _keystore(data_dir).list()
    click.echo(f"{'NAME':<24} {'PREFIX':<12} {'ADMIN':<6} {'CREATED':<20} REVOKED")
    for row in rows:
        created = row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        revoked = row["revoked_at"].strftime("%Y-%m-%d %H:%M:%S") if row["revoked_at"] else "-"
        admin = "yes" if row.get("admin") else "no"
        click.echo(f"{row['name']:<24} {row['prefix']:<12} {admin:<6} {created:<20} {revoked}")


@keys.command("revoke")
@click.option("--name", required=True, callback=_key_name)
@data_dir_option
def keys_revoke(name: str, data_dir: Path) -> None:
    """Revoke every live key of NAME; API processes refuse it within JOBLINE_KEY_CACHE_SECONDS."""
    revoked = _keystore(data_dir).revoke(name)
    if not revoked:
        raise click.ClickException(f"no live key named {name!r}")
    click.echo(f"revoked {revoked} key(s) of {name}")


@click.group()
def jobs() -> None:
    """Operate on stored jobs directly (not through the API)."""


@jobs.command("adopt")
@click.option("--owner", required=True, callback=_key_name, help="The key name to hand them to")
@click.option("--dry-run", is_flag=True, help="Only count what has no owner")
@data_dir_option
def jobs_adopt(owner: str, dry_run: bool, data_dir: Path) -> None:
    """Hand every job, workflow, schedule and file made with auth off (no owner) to OWNER's key.

    Until then, with keys required, only admin keys see them. Safe to run again:
    it only ever changes jobs that still have no owner.
    """
    from jobline.store.ownership import Ownership, Unowned

    keystore = _keystore(data_dir)
    if not keystore.named(owner):
        raise click.ClickException(
            f"no key named {owner!r}; create one first: jobline keys create --name {owner}"
        )
    ownership = Ownership(keystore.keys.database)

    def counted(found: Unowned) -> str:
        kinds = (
            _plural(found.jobs, "job"),
            _plural(found.workflows, "workflow"),
            _plural(found.schedules, "schedule"),
        )
        return f"{', '.join(kinds)} and {_plural(found.files, 'file')}"

    if dry_run:
        click.echo(f"{counted(ownership.count_unowned())} have no owner; nothing changed")
        return
    click.echo(f"handed {counted(ownership.adopt(owner))} made with auth off to {owner}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


COMMANDS = (keys, jobs)
