"""Finding the stack ``jobline up`` runs: its servers' URLs, recorded under its data dir.

``jobline up`` starts its embedded MongoDB and Redis on new free ports at each
start, so the commands run beside it (``jobline keys``, ``api``, ``worker``,
``submit``…) cannot guess them. ``jobline up`` writes them to
``<data dir>/stack.json`` and removes the file when it stops; the commands read
it when no ``JOBLINE_*_URL`` says otherwise. An explicit variable always wins.
Only what ``jobline up`` started itself is recorded (loopback URLs without
credentials), never a URL taken from the environment, which may hold a password.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobline.core.logs import scrub
from jobline.core.settings import Settings

DEFAULT_DATA_DIR = Path(".jobline")
RECORD_NAME = "stack.json"
# The settings a record can fill in, and the variable that, when set, wins over it.
FILLED = {"mongo_url": "JOBLINE_MONGO_URL", "redis_url": "JOBLINE_REDIS_URL"}
DEFAULT_API_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class LocalStack:
    """What a running ``jobline up`` tells the commands beside it."""

    pid: int
    api_url: str
    flower_url: str
    # Only the servers it started; None where it used a URL from the environment.
    mongo_url: str | None = None
    redis_url: str | None = None


def record_path(data_dir: Path) -> Path:
    return data_dir / RECORD_NAME


def write(data_dir: Path, stack: LocalStack) -> None:
    """Record ``stack`` under ``data_dir``, replacing the file whole so readers never see half."""
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = record_path(data_dir).with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(stack), indent=2) + "\n")
    partial.replace(record_path(data_dir))


def remove(data_dir: Path, pid: int) -> None:
    """Remove the record, if it is still the one process ``pid`` wrote."""
    found = _read(data_dir)
    if found is not None and found.pid == pid:
        record_path(data_dir).unlink(missing_ok=True)


def find(data_dir: Path) -> LocalStack | None:
    """The stack running on ``data_dir``; None if there is none (or its process is gone)."""
    found = _read(data_dir)
    return found if found is not None and _alive(found.pid) else None


def _read(data_dir: Path) -> LocalStack | None:
    try:
        values = json.loads(record_path(data_dir).read_text())
        return LocalStack(**values)
    except (OSError, ValueError, TypeError):
        return None  # none, or not one we wrote: as if no stack ran there


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


@dataclass
class Resolved:
    """Settings for a command, and where each of its server URLs came from."""

    settings: Settings
    data_dir: Path
    stack: LocalStack | None
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, name: str) -> str:
        return self.origins.get(name, "the default")

    def describe(self) -> str:
        """One line naming the store and the broker used, and why those."""
        s = self.settings
        return (
            f"jobline: store {scrub(s.mongo_url)} ({self.origin('mongo_url')}), "
            f"broker {scrub(s.broker)} ({self.origin('broker_url')})"
        )

    def unreachable_hint(self) -> str:
        """What to do when the store cannot be reached, given where its URL came from."""
        if self.origins.get("mongo_url") is not None:
            return ""
        return (
            f"; no `jobline up` runs on {self.data_dir.resolve()}: start one, pass --data-dir, "
            "or set JOBLINE_MONGO_URL"
        )


def resolve(data_dir: Path) -> Resolved:
    """Settings from the environment, with the URLs of a stack running on ``data_dir`` filling
    in whatever the environment leaves unset."""
    # pydantic-settings matches variable names in any case; an empty one counts as unset.
    given = {name.upper() for name, value in os.environ.items() if value}
    stack = find(data_dir)
    found: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, variable in FILLED.items():
        if variable in given:
            origins[name] = variable
        elif stack is not None and getattr(stack, name):
            found[name] = getattr(stack, name)
            origins[name] = f"from the `jobline up` on {data_dir.resolve()}"
    if "JOBLINE_BROKER_URL" in given:
        origins["broker_url"] = "JOBLINE_BROKER_URL"
    elif "redis_url" in origins:
        origins["broker_url"] = origins["redis_url"]
    if stack is not None and "JOBLINE_FLOWER_URL" not in given:
        found["flower_url"] = stack.flower_url
    return Resolved(Settings(**found), data_dir, stack, origins)


def api_url(data_dir: Path, explicit: str | None) -> tuple[str, str]:
    """The API a client command talks to, and why: ``explicit`` (``--url``/``JOBLINE_URL``)
    wins, then the stack running on ``data_dir``, then the default."""
    if explicit:
        return explicit, "--url or JOBLINE_URL"
    stack = find(data_dir)
    if stack is not None:
        return stack.api_url, f"from the `jobline up` on {data_dir.resolve()}"
    return DEFAULT_API_URL, "the default"
