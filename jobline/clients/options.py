"""What every ``jobline`` command shares: ``--data-dir``, and settings that find ``jobline up``.

A command run beside a local stack finds its servers through the record
``jobline up`` keeps in its data dir (see :mod:`jobline.core.local_stack`), says
on stderr which store and broker it uses, and names them when they cannot be
reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click
from pymongo.errors import PyMongoError

from jobline.core import local_stack, logs
from jobline.core.errors import StoreUnavailable
from jobline.core.logs import scrub

log = logging.getLogger("jobline")

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(command: F) -> F:
    """``--data-dir``: where the ``jobline up`` to use runs."""
    option = click.option(
        "--data-dir",
        envvar="JOBLINE_DATA_DIR",
        default=str(local_stack.DEFAULT_DATA_DIR),
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The data dir of the `jobline up` whose servers to use when no "
        "JOBLINE_*_URL is set [env JOBLINE_DATA_DIR]",
    )
    return option(command)  # type: ignore[no-any-return]


def settings_beside(
    data_dir: Path, *, logged: bool = False, level: str | None = None
) -> local_stack.Resolved:
    """The settings of a command run beside ``data_dir``; says on stderr what it uses.

    ``logged``: a server process, whose stderr is its log, says it as a log record
    (JSON unless JOBLINE_LOG_FORMAT=text), at ``level`` if given (a worker's
    --loglevel); a command typed at a shell says it plainly.
    """
    try:
        resolved = local_stack.resolve(data_dir)
    except Exception as exc:  # pydantic names the bad variable
        raise click.ClickException(f"invalid configuration: {exc}") from None
    if logged:
        settings = resolved.settings
        logs.configure(settings.model_copy(update={"log_level": level}) if level else settings)
        log.info(resolved.describe())
    else:
        click.echo(resolved.describe(), err=True)
    return resolved


class HasIndexes(Protocol):
    def ensure_indexes(self) -> None: ...


def ensure_indexes(store: HasIndexes, resolved: local_stack.Resolved, wait: float) -> None:
    """Create ``store``'s indexes, retrying for up to ``wait`` seconds while MongoDB starts."""
    where = f"{scrub(resolved.settings.mongo_url)} ({resolved.origin('mongo_url')})"
    deadline = time.monotonic() + wait
    while True:
        try:
            store.ensure_indexes()
            return
        except StoreUnavailable as exc:  # "MongoDB unreachable: <why>"
            if time.monotonic() >= deadline:
                hint = resolved.unreachable_hint()
                raise click.ClickException(f"{exc} at {where}{hint}") from None
        except PyMongoError as exc:  # reachable, but refusing (credentials, permissions)
            raise click.ClickException(f"MongoDB at {where} refused: {scrub(str(exc))}") from None
        time.sleep(0.5)
