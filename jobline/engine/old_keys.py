"""Redis keys named the way older jobline versions named them, adopted at a worker's start.

jobline used to set the Redis transport's ``sep`` to ":" (a queue's priority
lists were ``default:1`` … ``default:9`` and the exchanges' binding tables
joined their fields with ":"), and later kept a list for each of the ten
priorities. Celery's own tools read Celery's default separator and its four
steps (0, 3, 6, 9), so jobline now uses both, and a worker adopts the old keys
before it consumes: messages waiting in the old lists move to the step list
their priority now goes to, most urgent nearest the consumer, and bindings in
the old format are dropped (each live consumer declares its own again, and an
old one, read under the new separator, breaks routing to its exchange).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import cast

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis import Redis, RedisError

from jobline.engine.queue import MAX_PRIORITY, is_amqp, redis_step

log = logging.getLogger(__name__)

OLD_SEP = ":"
# kombu's binding tables: one set per exchange, and (kombu 5.7) their permanent copies.
BINDING_PATTERNS = ("_kombu.binding.*", "_kombu.binding_permanent.*")


def adopt(app: Celery, queues: Iterable[str]) -> int:
    """Move ``queues``' messages out of the old lists, drop old bindings; returns messages moved.

    Best effort, at a worker's start: a broker that does not answer is logged.
    """
    if is_amqp(app.conf.broker_url):
        return 0  # RabbitMQ queues never had the Redis transport's key names
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            if channel.sep == OLD_SEP:
                return 0
            client = channel.client
            moved = sum(_move_lists(client, queue, channel.sep) for queue in set(queues))
            dropped = _drop_old_bindings(client, channel.sep)
    except (OperationalError, KombuError, RedisError, ConnectionError, OSError) as exc:
        # The worker waits for its broker anyway; a job whose message stays in an
        # old list is republished by the sweeper once its queue has drained.
        log.warning("could not look for Redis keys of the old naming: %s", type(exc).__name__)
        return 0
    if moved or dropped:
        log.warning(
            "adopted Redis keys of the old naming: %s messages moved, %s bindings dropped",
            moved,
            dropped,
        )
    return moved


def _move_lists(client: Redis, queue: str, sep: str) -> int:
    moved = 0
    # The consumer takes from a list's right end, where the oldest is. Moving each
    # old list newest first onto the right end keeps its order and puts it ahead
    # of what is there; least urgent first, so the most urgent end up nearest.
    # Priority 0 is the queue's own name in every naming.
    for priority in range(MAX_PRIORITY, 0, -1):
        new = f"{queue}{sep}{redis_step(priority)}"
        for old in sorted({f"{queue}{OLD_SEP}{priority}", f"{queue}{sep}{priority}"} - {new}):
            while client.lmove(old, new, "LEFT", "RIGHT") is not None:
                moved += 1
    return moved


def _drop_old_bindings(client: Redis, sep: str) -> int:
    dropped = 0
    for pattern in BINDING_PATTERNS:
        for key in client.scan_iter(match=pattern, count=1000, _type="SET"):
            members = cast("set[bytes | str]", client.smembers(key))
            old = [m for m in members if sep.encode() not in _bytes(m)]
            if old:
                client.srem(key, *old)
                dropped += len(old)
    return dropped


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
