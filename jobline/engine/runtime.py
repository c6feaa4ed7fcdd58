"""What a worker process holds: its settings, its catalogue, and a store made after fork."""

from __future__ import annotations

import os
from dataclasses import dataclass

from jobline.core.settings import Settings
from jobline.jobs import Catalogue
from jobline.store.jobs import JobStore


@dataclass
class Runtime:
    """What the task needs in each worker process; connections made after fork."""

    settings: Settings
    catalogue: Catalogue
    _store: JobStore | None = None
    _pid: int = 0

    @property
    def store(self) -> JobStore:
        # pymongo clients must not cross a fork: one per process.
        if self._store is None or self._pid != os.getpid():
            self._store = JobStore(self.settings)
            self._pid = os.getpid()
        return self._store
