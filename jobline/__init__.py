"""jobline: submit slow work over HTTP, get an id at once, come back for the result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jobline.clients.python import ApiError, Client, ClientError, Unreachable, WaitTimeout

_CLIENT_NAMES = ("ApiError", "Client", "ClientError", "Unreachable", "WaitTimeout")
__all__ = ["ApiError", "Client", "ClientError", "Unreachable", "WaitTimeout", "__version__"]


def __getattr__(name: str) -> Any:
    # The client (and httpx) load only when asked for, not in every worker and API process.
    if name in _CLIENT_NAMES:
        from jobline.clients import python

        return getattr(python, name)
    raise AttributeError(f"module 'jobline' has no attribute {name!r}")
