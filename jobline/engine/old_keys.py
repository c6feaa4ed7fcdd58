"""Redis keys named the way jobline named them before it kept Celery's default separator.

jobline used to set the Redis transport's ``sep`` to ":": a queue's priority
lists were ``default:1`` … ``default:9`` and the exchanges' binding tables
joined their fields with ":". Celery's own tools use the default separator,
so jobline now does too, and a worker adopts the old keys before it
consumes: messages waiting in the old lists move to the lists the transport
reads now, and bindings in the old format are dropped (each live consumer
declares its own again, and an old one, read under the new separator, breaks
routing to its exchange).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import cast

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis import Redis, RedisError

from jobline.engine.queue import PRIORITY_STEPS, is_amqp

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
    for step in PRIORITY_STEPS[1:]:  # the most urgent list is the queue's own name in both
        old, new = f"{queue}{OLD_SEP}{step}", f"{queue}{sep}{step}"
        # Oldest at the right end in both lists: newest-first from the old list's
        # left onto the new list's right keeps the order they were published in.
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
