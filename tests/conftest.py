"""Real servers on free ports: redis-server, SecantusDB, Celery workers and the API over HTTP."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from werkzeug.serving import BaseWSGIServer, make_server

from jobline import jobs
from jobline.api import create_app
from jobline.core.settings import Settings
from jobline.engine.pipeline import Pipeline
from jobline.engine.queue import make_celery
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from jobline.store.keys import KeyStore

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="session", autouse=True)
def no_names_resolved_off_this_machine() -> Iterator[None]:
    """Names other than localhost fail to resolve in the tests' own process.

    A callback_url's host is resolved at submission; generated or mistyped
    names must never turn into a DNS query leaving the machine.
    """
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name.rstrip(".").lower() == "localhost":
            return real(host, *args, **kwargs)
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            try:
                socket.inet_aton(name)  # IPv4 in a spelling only the resolver reads (127.1)
            except OSError:
                raise socket.gaierror(
                    socket.EAI_NONAME, f"tests resolve no names: {name}"
                ) from None
        return real(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", local_only)
        yield


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own, with AOF on."""
    process, url = local.start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.stop()


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded MongoDB-protocol server, as its own process."""
    process, url = local.start_mongo(tmp_path_factory.mktemp("mongo"))
    yield url
    process.stop()


def make_settings(redis_url: str, mongo_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "mongo_url": mongo_url,
        "mongo_db": "jobline_test",
        "bmi_seconds": 0,
        "lease_seconds": 6,
        "requeue_after_seconds": 10,
        "sweep_interval_seconds": 1,
        "connect_timeout_seconds": 1,
        "job_modules": "tests.jobtypes",
        "webhook_secret": "test-webhook-secret-not-for-production",
        # The tests' webhook receivers listen here; nothing else off limits is allowed.
        "webhook_allowed_networks": "127.0.0.1/32",
        # Many tests send wrong keys on purpose; tests/api/test_lockout.py sets its own limit.
        "auth_failures_per_minute": 10_000,
        # Most tests are not about keys; the keyed_* fixtures turn auth on.
        "auth": False,
        # Small enough that a test reaches the caps quickly.
        "job_log_max_bytes": 50_000,
        "max_file_bytes": 2_000_000,
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[f"JOBLINE_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


@pytest.fixture(scope="session")
def settings(redis_url: str, mongo_url: str) -> Settings:
    """Settings pointing at the session's servers, with the demo's sleep off."""
    return make_settings(redis_url, mongo_url)


@pytest.fixture(scope="session")
def store(settings: Settings) -> Iterator[JobStore]:
    store = JobStore(settings)
    store.ensure_indexes()
    yield store
    store.close()


def start_worker(settings: Settings, log: Path, *args: str, name: str = "worker") -> local.Process:
    """A real `jobline worker` process, returned once it answers a ping."""
    argv = local.jobline_argv("worker", "--loglevel=INFO", *args)
    process = local.Process(name, argv, env=settings_env(settings), log=log).start()
    hostname = next((a.split("=", 1)[1] for a in args if a.startswith("--hostname=")), None)
    app = make_celery(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"worker exited at start; see {log}")
        try:
            replies = app.control.ping(timeout=0.5)
        except Exception:  # a broker that has just restarted may drop the first reply
            replies = []
        if any(
            hostname is None or name.startswith(hostname.split("%")[0])
            for reply in replies
            for name in reply
        ):
            return process
    process.stop()
    raise RuntimeError(f"worker did not answer within 60s; see {log}")


@pytest.fixture(scope="session")
def worker_metrics_port() -> int:
    """Where the shared worker serves its Prometheus metrics."""
    return local.free_port()


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the shared worker writes its logs."""
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker(
    settings: Settings, worker_log: Path, worker_metrics_port: int
) -> Iterator[local.Process]:
    """One Celery worker with two processes, shared by the integration tests."""
    log = worker_log
    process = start_worker(
        settings,
        log,
        "--concurrency=2",
        "--hostname=main@%h",
        f"--metrics-port={worker_metrics_port}",
        # Many tests leave jobs waiting in the shared database on purpose.
        "--no-sweep",
    )
    yield process
    process.stop()


class Api:
    """A requests session bound to the API's base URL."""

    def __init__(self, base: str, key: str | None = None) -> None:
        self.base = base
        self.http = requests.Session()
        if key is not None:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def wait_for(
        self, path: str, until: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """Poll a job until ``until(job)`` holds; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.get(path)
            assert response.status_code == 200, response.text
            job = response.json()
            if until(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on {path}; last seen {job}")

    def wait_terminal(self, path: str, timeout: float = 30) -> dict[str, Any]:
        return self.wait_for(path, lambda job: job["status"] in TERMINAL, timeout)

    def submit_and_wait(
        self, path: str, body: dict[str, Any], timeout: float = 30
    ) -> dict[str, Any]:
        """POST a job, check it was accepted, and wait for its terminal state."""
        response = self.post(path, json=body)
        assert response.status_code == 202, response.text
        return self.wait_terminal(response.headers["Location"], timeout)


class ServedApp:
    """A WSGI app served over real HTTP on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="session")
def served(settings: Settings, store: JobStore) -> Iterator[ServedApp]:
    served = ServedApp(create_app(settings))
    yield served
    served.close()


@pytest.fixture
def api(served: ServedApp, store: JobStore) -> Api:
    """The API over HTTP, on an empty job collection."""
    store.jobs.delete_many({})
    return Api(served.base.replace("http://127.0.0.1", "http://localhost"))


@pytest.fixture
def live_api(api: Api, worker: local.Process) -> Api:
    """The API with a worker running jobs behind it."""
    return api


@pytest.fixture(scope="session")
def idle_served(settings: Settings, store: JobStore) -> Iterator[ServedApp]:
    """The API on a broker database no worker consumes, so jobs stay queued."""
    served = ServedApp(create_app(idle_settings(settings)))
    yield served
    served.close()


@pytest.fixture
def idle_api(idle_served: ServedApp, store: JobStore) -> Api:
    """The API with no worker behind it, on an empty job collection."""
    store.jobs.delete_many({})
    return Api(idle_served.base)


def idle_settings(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` on a broker database no worker consumes, so jobs stay queued."""
    other_db = settings.redis_url.rsplit("/", 1)[0] + "/9"
    return Settings(
        **{**settings.model_dump(), "redis_url": other_db, "broker_url": None, **overrides}
    )


@contextmanager
def pipeline_of_its_own(settings: Settings, mongo_db: str, redis_db: int) -> Iterator[Pipeline]:
    """A store and broker database of their own, that no sweeper or worker touches."""
    broker = settings.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    own = idle_settings(settings, mongo_db=mongo_db, redis_url=broker)
    store = JobStore(own)
    store.ensure_indexes()
    store.jobs.delete_many({})
    p = Pipeline(own, store, make_celery(own), jobs.load(own.job_module_list))
    with p.celery.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    try:
        yield p
    finally:
        store.jobs.delete_many({})
        store.close()


@pytest.fixture(scope="module")
def idle_pipeline(settings: Settings, store: JobStore) -> Pipeline:
    """Submits jobs whose messages go to a broker database no worker reads: they stay queued
    until a test publishes them where the worker listens."""
    idle = idle_settings(settings)
    return Pipeline(idle, store, make_celery(idle), jobs.load(settings.job_module_list))


@pytest.fixture(scope="session")
def api_keys(store: JobStore) -> dict[str, str]:
    """Keys of two owners, alice and bob, and of an admin, root."""
    keys = KeyStore(store.db)
    keys.ensure_indexes()
    return {
        "alice": keys.create("alice"),
        "bob": keys.create("bob"),
        "root": keys.create("root", admin=True),
    }


@pytest.fixture(scope="session")
def keyed_served(settings: Settings, store: JobStore) -> Iterator[ServedApp]:
    """The API with keys required, no worker behind it, and a short key cache."""
    served = ServedApp(create_app(idle_settings(settings, auth=True, key_cache_seconds=1)))
    yield served
    served.close()


@pytest.fixture
def keyed_api(keyed_served: ServedApp, store: JobStore, api_keys: dict[str, str]) -> dict[str, Api]:
    """Clients of the keyed API by key name ("alice", "bob", "root"), and "anonymous"."""
    store.jobs.delete_many({})
    clients = {name: Api(keyed_served.base, key) for name, key in api_keys.items()}
    clients["anonymous"] = Api(keyed_served.base)
    return clients


class Gunicorn:
    """`jobline api` under gunicorn with two workers, as production runs it."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = local.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        argv = local.jobline_argv("api", f"--port={self.port}", "--workers=2", "--threads=4")
        self.process = local.Process("api", argv, env=settings_env(settings), log=log).start()
        local.wait_until(lambda: local.port_open(self.port), 60, "gunicorn", self.process)


@pytest.fixture(scope="session")
def gunicorn_api(
    settings: Settings, api_keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """The API under gunicorn (keys required), logging to a file the tests can read."""
    log = tmp_path_factory.mktemp("gunicorn") / "api.log"
    served = Gunicorn(Settings(**{**settings.model_dump(), "auth": True}), log)
    yield served
    served.process.stop()


@pytest.fixture
def brokerless_api(mongo_url: str) -> Iterator[Api]:
    """The API with a broker address nothing listens on: every publish fails."""
    dead = f"redis://127.0.0.1:{local.free_port()}/0"
    served = ServedApp(create_app(make_settings(dead, mongo_url)))
    yield Api(served.base)
    served.close()
