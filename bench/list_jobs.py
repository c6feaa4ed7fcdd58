"""How long GET /jobs pages take at scale, straight against the store.

    .venv/bin/python -m bench.list_jobs --jobs 100000 --spacing-ms 1000
    .venv/bin/python -m bench.list_jobs --jobs 100000 --spacing-ms 0.01 --quiet-s 60

Starts its own SecantusDB (or uses --mongo-url), inserts jobs of four types in
four statuses spread ``spacing-ms`` apart, the newest ``quiet-s`` seconds ago,
and times the first page of 50 and the next page of 500 for each filter. The
second line above is a burst (all within a second) a minute before the
listing: a first page must reach past the quiet minute into it. Not run by
pytest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jobline.core import ids
from jobline.core.settings import Settings
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.paging import at_ms
from jobline.store.records import Status, new_job

TYPES = ("noop", "sleep", "bmi", "align")
STATUSES = ("queued", "succeeded", "failed", "cancelled")


def fill(store: JobStore, n: int, spacing_ms: float, quiet_s: float) -> None:
    newest = int((time.time() - quiet_s) * 1000)
    for start in range(0, n, 5000):
        batch = []
        for i in range(start, min(n, start + 5000)):
            job = new_job(TYPES[i % 4], {"i": i})
            ms = newest - int((n - i) * spacing_ms)
            job.update(_id=ids.new_id(ms), created_at=at_ms(ms), status=STATUSES[i // 7 % 4])
            batch.append(job)
        store.insert_many(batch)


def timed(store: JobStore, **filters: Any) -> str:
    t = time.monotonic()
    page = store.list(limit=50, **filters)
    first = time.monotonic() - t
    t = time.monotonic()
    if page.next_cursor:
        store.list(limit=500, cursor=page.next_cursor, **filters)
    rest = time.monotonic() - t
    return f"first 50: {first * 1000:6.0f} ms   next 500: {rest * 1000:6.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--spacing-ms", type=float, default=1000)
    parser.add_argument("--quiet-s", type=float, default=0, help="seconds since the newest job")
    parser.add_argument("--mongo-url", default=None)
    args = parser.parse_args()
    server = None
    url = args.mongo_url
    if url is None:
        server, url = local.start_mongo(Path(tempfile.mkdtemp()))
    try:
        store = JobStore(Settings(mongo_url=url, mongo_db="jobline_bench"))
        store.jobs.drop()
        store.ensure_indexes()
        t = time.monotonic()
        fill(store, args.jobs, args.spacing_ms, args.quiet_s)
        took = time.monotonic() - t
        quiet = args.quiet_s + took  # the jobs' times were set as inserting began
        print(f"inserted {args.jobs} jobs in {took:.0f} s; the newest {quiet:.0f} s ago")
        middle = datetime.now().astimezone() - timedelta(
            seconds=quiet, milliseconds=args.jobs * args.spacing_ms / 2
        )
        cases: dict[str, dict[str, Any]] = {
            "no filter": {},
            "type": {"type": "bmi"},
            "status": {"status": Status.FAILED},
            "type and status": {"type": "align", "status": Status.CANCELLED},
            "created_after": {"created_after": middle},
            "created_before": {"created_before": middle},
            "created_before and type": {"created_before": middle, "type": "noop"},
            "no match": {"type": "nope"},
        }
        for name, filters in cases.items():
            print(f"{name:>24}  {timed(store, **filters)}")
        store.jobs.drop()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
