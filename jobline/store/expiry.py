"""Removing records past their ``expires_at``, by the indexes MongoDB's TTL monitor reads.

MongoDB's own monitor removes them too, about once a minute. The embedded
SecantusDB server is started with its monitor off (jobline.local.servers):
there a pass reads every document of every collection under the server's one
lock, so each minute every request waited behind it, longer the more jobs were
kept. This range read on the same index touches only what has expired.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from jobline.store.paging import EPOCH

# Each expiring collection, and the filter that rides its TTL index (the jobs'
# index is partial on a set expires_at, and a query must imply that filter).
EXPIRING: dict[str, dict[str, Any]] = {
    "jobs": {"$gt": EPOCH},
    "workflows": {},
    "workflow_steps": {},
}


def remove_expired(db: Any, at: datetime) -> Counter[str]:
    """Delete every record whose ``expires_at`` is before ``at``; how many, by collection."""
    removed: Counter[str] = Counter()
    for name, bound in EXPIRING.items():
        gone = db[name].delete_many({"expires_at": {**bound, "$lt": at}}).deleted_count
        if gone:
            removed[f"{name}_expired"] = gone
    return removed
