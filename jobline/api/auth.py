"""Who a request acts for: the API key is checked once, before any handler runs.

Every endpoint is covered by one ``before_request`` hook; the few that must
answer without a key (health probes, metrics, the API's own docs) are listed in
``PUBLIC_ENDPOINTS``. Handlers ask :func:`scope` for the owner filter to pass to
the store and :func:`owner` for the owner to record on a new job.
"""

from __future__ import annotations

import logging
import threading

import cachetools
from flask import Flask, g, request

from jobline.api.lockout import Lockout
from jobline.core.errors import Unauthorized
from jobline.core.settings import Settings
from jobline.store.keys import KeyStore, Principal, digest

log = logging.getLogger(__name__)

# Probes and scrapers carry no keys; the docs and spec show no data.
PUBLIC_ENDPOINTS = frozenset(
    {
        "health.healthz",
        "health.readyz",
        "metrics.metrics",
        "api.root",
        "api.doc",
        "api.specs",
        "restx_doc.static",
        "api.static",
        "static",
        # The board's page and files: it asks for a key and sends it with every call.
        "dashboard.index",
        "dashboard.static",
    }
)


def init_app(app: Flask, settings: Settings, keys: KeyStore) -> None:
    """Refuse requests without a valid key (when JOBLINE_AUTH is on)."""
    # Key lookups (found or not) are reused for key_cache_seconds, so a request
    # costs no MongoDB round trip and a revocation takes effect within that time.
    # Cached by the key's digest, so the raw key is never held as a dict key.
    cache: cachetools.TTLCache[str, Principal | None] = cachetools.TTLCache(
        maxsize=10_000, ttl=settings.key_cache_seconds
    )
    lookup = cachetools.cached(cache, key=digest, lock=threading.Lock())(keys.lookup)
    lockout = Lockout(settings)

    @app.before_request
    def authenticate() -> None:
        g.principal = None
        if not settings.auth or request.endpoint in PUBLIC_ENDPOINTS:
            return
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("send an API key: `Authorization: Bearer KEY`")
        principal = lookup(key)
        if principal is None:
            # The address, never the key: a wrong key may be a real one mistyped.
            address = request.remote_addr or "unknown"
            log.warning("wrong API key", extra={"client_address": address, "path": request.path})
            lockout.failed(address)
            raise Unauthorized("the API key is unknown or revoked", invalid=True)
        g.principal = principal


def principal() -> Principal | None:
    """The key the current request carries; None when auth is off."""
    return g.get("principal")


def owner() -> str | None:
    """The owner to record on a job submitted by this request (None when auth is off)."""
    p = principal()
    return p.name if p else None


def scope() -> str | None:
    """The owner filter for this request's reads and changes: None (every job) for admins."""
    p = principal()
    return None if p is None or p.admin else p.name
