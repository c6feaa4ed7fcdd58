"""A tiny thread-safe TTL cache, for answers worth reusing for a few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Remembers values for ``ttl`` seconds; bounded, dropping everything when full."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value of ``key``, or ``compute()`` cached now (exceptions are not cached)."""
        t = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] > t:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
