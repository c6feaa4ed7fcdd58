"""Fixtures for the deployment tests: a RabbitMQ node, and the API and store on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from amqp.exceptions import ChannelError

from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.engine.queue import DEFAULT_QUEUE, make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp, make_settings, settings_env
from tests.deploy.rabbit import RabbitNode, rabbit_script

JOB_MODULES = "tests.jobtypes,tests.deploy.jobtypes"


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """Debian's rabbitmq-server on free loopback ports, its data in tmp."""
    if rabbit_script("rabbitmq-server") is None or rabbit_script("rabbitmqctl") is None:
        pytest.skip("rabbitmq-server is not installed (`make setup` installs it with apt-get)")
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq")).start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def rabbit_settings(rabbit: RabbitNode, redis_url: str, mongo_url: str) -> Settings:
    """Settings with RabbitMQ as the broker (Redis stays for the Redis-backed extras)."""
    return make_settings(
        redis_url,
        mongo_url,
        broker_url=rabbit.url,
        mongo_db="jobline_rabbit",
        lease_seconds=3,
        job_modules=JOB_MODULES,
    )


@pytest.fixture(scope="session")
def rabbit_store(rabbit_settings: Settings) -> Iterator[JobStore]:
    store = JobStore(rabbit_settings)
    store.ensure_indexes()
    yield store
    store.close()


@pytest.fixture(scope="session")
def rabbit_served(rabbit_settings: Settings, rabbit_store: JobStore) -> Iterator[ServedApp]:
    served = ServedApp(create_app(rabbit_settings))
    yield served
    served.close()


@pytest.fixture
def rabbit_api(rabbit_served: ServedApp, rabbit_store: JobStore, rabbit_settings: Settings) -> Api:
    """The API on RabbitMQ, with no jobs stored and no messages waiting."""
    rabbit_store.jobs.delete_many({})
    # A queue not declared yet has nothing to purge.
    with (
        make_celery(rabbit_settings).connection_for_write() as conn,
        contextlib.suppress(ChannelError),
    ):
        conn.default_channel.queue_purge(DEFAULT_QUEUE)
    return Api(rabbit_served.base)


def sweeper(settings: Settings, log: Path) -> local.Process:
    """A real `jobline sweep` loop, handing on jobs whose worker vanished."""
    argv = local.jobline_argv("sweep", "--interval=0.5")
    return local.Process("sweeper", argv, env=settings_env(settings), log=log).start()
