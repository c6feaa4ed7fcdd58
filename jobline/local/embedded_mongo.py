"""`python -m jobline.local.embedded_mongo`: the embedded SecantusDB server, as jobline runs it.

SecantusDB's own launcher (``secantusd-py``) does not pass on its TTL monitor's
interval, and that monitor reads every document of every collection under the
server's one lock once a minute: each minute every request waited behind it,
longer the more jobs were kept. This starts the same server with the monitor
off; jobline's sweep removes expired records by their TTL indexes instead
(store.expiry), as MongoDB's own monitor does on a real server. It also reads
its index catalogue through a cache (jobline.local.index_catalogue), and stops
without waiting on its own accept thread.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
from types import FrameType

from secantus.server import SecantusDBServer
from secantus.storage import Storage

from jobline.local import index_catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobline.local.embedded_mongo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    index_catalogue.install(Storage)
    server = SecantusDBServer(
        host=args.host,
        port=args.port,
        storage_path=args.storage_path,
        # Standalone, not a one-node replica set: jobline uses no change streams or
        # transactions, so every write skips its oplog entry, and the driver makes no
        # retryable-write records (which SecantusDB rescans, up to 10,000, on each write).
        replica_set_name=None,
        enable_test_commands=False,
        ttl_sweep_seconds=0,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # SecantusDB closes its listening socket to stop accepting, but on Linux a close
        # does not wake the thread blocked in accept(), and stop() then waits 2 s for it;
        # a shutdown of the socket does.
        with contextlib.suppress(OSError, AttributeError):
            server._socket.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server.start()
    server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
