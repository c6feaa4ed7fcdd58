"""Live job changes: Redis pub/sub publishing and the Server-Sent Event streams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from jobline.api import create_app
from jobline.api.events import Subscription
from jobline.cli import GRACEFUL_TIMEOUT_SECONDS
from jobline.core.settings import Settings
from jobline.engine import events, queue
from jobline.engine.pipeline import Pipeline
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, Gunicorn, ServedApp, start_worker

Event = tuple[str, dict[str, Any]]


def read_events(response: requests.Response) -> Iterator[Event]:
    """The (event, data) pairs of a text/event-stream response, as they arrive."""
    name, data = "message", ""
    # chunk_size=1: requests would otherwise wait for 512 bytes before yielding a line.
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if line == "":
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def stream(api: Api, path: str, timeout: float = 30) -> requests.Response:
    response = requests.get(api.url(path), stream=True, timeout=timeout)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def statuses(received: list[Event]) -> list[tuple[str, int]]:
    """The (status, attempts) sequence, one entry per transition (progress collapsed)."""
    seen: list[tuple[str, int]] = []
    for _, data in received:
        step = (data["status"], data["attempts"])
        if not seen or seen[-1] != step:
            seen.append(step)
    return seen


def release(settings: Settings, idle_pipeline: Pipeline, job: dict[str, Any]) -> None:
    """Publish a queued job's message where the worker listens, as the sweeper would."""
    job_type = idle_pipeline.catalogue.get(job["type"])
    queue.publish(queue.make_celery(settings), job, job_type)


RETRIED_TWICE = [
    ("queued", 0),
    ("running", 1),
    ("retrying", 1),
    ("running", 2),
    ("retrying", 2),
    ("running", 3),
    ("succeeded", 3),
]


@pytest.mark.parametrize(
    ("type", "params", "expected"),
    [
        (
            "bmi",
            {"name": "Ada", "weight": 55, "height": 170},
            [("queued", 0), ("running", 1), ("succeeded", 1)],
        ),
        ("test_broken", {}, [("queued", 0), ("running", 1), ("failed", 1)]),
        ("test_flaky", {"failures": 2}, RETRIED_TWICE),
    ],
)
def test_a_job_stream_delivers_every_transition_in_order_and_ends_at_the_terminal_state(
    live_api: Api,
    settings: Settings,
    idle_pipeline: Pipeline,
    type: str,
    params: dict[str, Any],
    expected: list[tuple[str, int]],
) -> None:
    job = idle_pipeline.submit(type, params)
    response = stream(live_api, f"/api/v1/jobs/{job['_id']}/events")
    received: list[Event] = []
    for event in read_events(response):
        received.append(event)
        if len(received) == 1:
            release(settings, idle_pipeline, job)
    assert {name for name, _ in received} == {"job"}
    first = received[0][1]
    assert first["id"] == job["_id"] and first["params"] == params
    assert statuses(received) == expected
    last = received[-1][1]
    stored = live_api.get(f"/api/v1/jobs/{job['_id']}").json()
    assert last["status"] == stored["status"]
    assert last["result"] == stored["result"] and last["error"] == stored["error"]
    if stored["status"] == "succeeded":
        assert last["progress"] == 1.0


def test_progress_arrives_on_the_stream_before_the_result(
    live_api: Api, settings: Settings, idle_pipeline: Pipeline
) -> None:
    job = idle_pipeline.submit("sleep", {"seconds": 1.5, "steps": 6})
    response = stream(live_api, f"/api/v1/jobs/{job['_id']}/events")
    received: list[dict[str, Any]] = []
    for name, data in read_events(response):
        if name != "job":
            continue  # the sleep job's log lines, as `log` events
        received.append(data)
        if len(received) == 1:
            release(settings, idle_pipeline, job)
    progress = [d["progress"] for d in received if d["status"] == "running"]
    assert progress == sorted(progress)
    assert any(0 < p < 1 for p in progress), "progress should be published while it runs"
    assert any((d.get("progress_message") or "").startswith("step ") for d in received[1:-1])
    assert received[-1]["status"] == "succeeded"
    assert received[-1]["progress"] == 1.0 and received[-1]["result"]["slept"] >= 1.5


def test_the_last_event_of_a_stream_says_what_the_stored_job_says(live_api: Api) -> None:
    body = {"type": "sleep", "params": {"seconds": 3, "steps": 6}}
    location = live_api.post("/api/v1/jobs", json=body).headers["Location"]
    received = [data for _, data in read_events(stream(live_api, f"{location}/events"))]
    stored = live_api.get(location).json()
    assert received[-1]["status"] == stored["status"] == "succeeded"
    assert stored["progress_message"] is not None  # it reported steps as it went
    assert received[-1]["progress_message"] == stored["progress_message"]
    assert received[-1]["progress"] == stored["progress"] == 1.0


def test_a_cancelled_job_ends_its_stream(idle_api: Api, idle_pipeline: Pipeline) -> None:
    job = idle_pipeline.submit("bmi", {"name": "Ada", "weight": 55, "height": 170})
    response = stream(idle_api, f"/api/v1/jobs/{job['_id']}/events")
    received = []
    for _, data in read_events(response):
        received.append(data["status"])
        if len(received) == 1:
            assert idle_api.post(f"/api/v1/calculations/{job['_id']}/cancel").status_code == 200
    assert received == ["queued", "cancelled"]


@pytest.mark.parametrize(
    ("change", "seen"), [("cancel", ["queued", "cancelled"]), ("delete", ["queued"])]
)
def test_a_change_whose_event_was_lost_still_reaches_the_stream_within_seconds(
    idle_api: Api, idle_pipeline: Pipeline, store: JobStore, change: str, seen: list[str]
) -> None:
    job = idle_pipeline.submit("bmi", {"name": "Ada", "weight": 55, "height": 170})
    # Reads give up before the first keep-alive would come (15 s): only a re-read answers.
    response = stream(idle_api, f"/api/v1/jobs/{job['_id']}/events", timeout=12)
    received: list[str] = []
    for _, data in read_events(response):
        received.append(data["status"])
        if len(received) == 1:
            getattr(store, change)(job["_id"])  # straight in the store: no event is published
    assert received == seen  # a deleted job's stream ends


def test_a_stream_for_a_finished_job_sends_it_once_and_ends_at_once(
    live_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = live_api.submit_and_wait("/api/v1/calculations", {"name": "A", "weight": 5, "height": 50})
    # A subscription would now take a minute to be ready: a finished job needs none.
    monkeypatch.setattr(events, "LISTENERS_TTL", 60.0)
    response = stream(live_api, f"/api/v1/jobs/{job['id']}/events", timeout=20)
    assert response.text.startswith("retry: ")
    received = list(read_events(io_of(response.text)))
    assert [data["status"] for _, data in received] == ["succeeded"]
    assert received[0][1]["result"] == job["result"]


def io_of(text: str) -> Any:
    """A stand-in response whose lines are ``text``'s."""

    class Lines:
        def iter_lines(self, chunk_size: int = 1, decode_unicode: bool = True) -> Iterator[str]:
            return iter(text.split("\n"))

    return Lines()


@pytest.mark.parametrize("job_id", ["0193a5a8-0000-7000-8000-000000000000", "nope", "%24ne"])
def test_a_stream_for_an_unknown_job_is_a_404_problem_at_once(
    idle_api: Api, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "LISTENERS_TTL", 60.0)  # no wait for a job that is not there
    response = requests.get(idle_api.url(f"/api/v1/jobs/{job_id}/events"), timeout=20)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_the_global_stream_carries_changes_to_every_job(live_api: Api) -> None:
    response = stream(live_api, "/api/v1/events")
    lines = response.iter_lines(chunk_size=1, decode_unicode=True)
    assert next(lines).startswith("retry: ")  # connected and subscribed
    submitted = {
        live_api.post("/api/v1/calculations", json={"name": n, "weight": 60, "height": 170}).json()[
            "id"
        ]
        for n in ("a", "b")
    }
    finished: dict[str, str] = {}
    seen: dict[str, list[str]] = {}
    for _, data in read_events(response):
        seen.setdefault(data["id"], []).append(data["status"])
        if data["status"] in events.TERMINAL:
            finished[data["id"]] = data["status"]
        if submitted <= set(finished):
            break
    response.close()
    assert finished == {job_id: "succeeded" for job_id in submitted}
    for job_id in submitted:
        assert seen[job_id][0] == "queued"
        assert "owner" not in json.dumps(seen)


def test_a_batch_announces_each_of_its_jobs_on_the_global_stream(idle_api: Api) -> None:
    response = stream(idle_api, "/api/v1/events")
    batch = {"jobs": [{"type": "noop", "params": {}} for _ in range(3)]}
    answer = idle_api.post("/api/v1/jobs:batch", json=batch).json()
    submitted = [result["id"] for result in answer["results"]]
    announced = []
    for _, data in read_events(response):
        announced.append((data["id"], data["status"]))
        if len(announced) == len(submitted):
            break
    response.close()
    assert announced == [(job_id, "queued") for job_id in submitted]


@pytest.fixture(scope="module")
def short_streams(settings: Settings, store: JobStore) -> Iterator[Api]:
    """The API with event streams that last one second."""
    served = ServedApp(create_app(Settings(**{**settings.model_dump(), "stream_max_seconds": 1})))
    yield Api(served.base)
    served.close()


def test_streams_end_after_their_lifetime_so_clients_reconnect(
    short_streams: Api, idle_pipeline: Pipeline
) -> None:
    job = idle_pipeline.submit("bmi", {"name": "Ada", "weight": 55, "height": 170})
    for path in ("/api/v1/events", f"/api/v1/jobs/{job['_id']}/events"):
        started = time.monotonic()
        response = stream(short_streams, path, timeout=10)
        text = response.text  # returns only once the server ends the stream
        assert time.monotonic() - started < 8
        assert text.startswith("retry: 1000\n")
    assert [d["status"] for _, d in read_events(io_of(text))] == ["queued"]


@pytest.mark.timeout(90)
def test_an_api_told_to_stop_ends_its_open_streams_cleanly_and_stops_at_once(
    settings: Settings, idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    # A board left open and a `--wait` on a job that is not run: without their
    # end, gunicorn would wait out its graceful timeout and then cut them off.
    job = idle_pipeline.submit("bmi", {"name": "Ada", "weight": 55, "height": 170})
    served = Gunicorn(settings, tmp_path / "api.log")
    try:
        api = Api(served.base)
        streams = [stream(api, "/api/v1/events"), stream(api, f"/api/v1/jobs/{job['_id']}/events")]
        lines = [r.iter_lines(chunk_size=1, decode_unicode=True) for r in streams]
        assert [next(each) for each in lines] == ["retry: 1000", "retry: 1000"]
        started = time.monotonic()
        served.process.terminate()
        # Each stream ends as a stream ends (a cut one raises here), nothing lost.
        rest = ["\n".join(each) for each in lines]
        assert served.process.popen is not None
        assert served.process.popen.wait(timeout=30) == 0
        stopped_after = time.monotonic() - started
    finally:
        served.process.stop()
    # Other tests' jobs may change meanwhile: the all-jobs stream is only seen to end.
    assert rest[0].startswith("\n: connected\n")
    assert [d["status"] for _, d in read_events(io_of(rest[1]))] == ["queued"]
    assert stopped_after < GRACEFUL_TIMEOUT_SECONDS, f"stopped after {stopped_after:.1f}s"


@pytest.fixture(scope="module")
def no_events(
    settings: Settings, store: JobStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """An API and a worker whose pub/sub Redis is down while the broker works."""
    broken = Settings(
        **{
            **settings.model_dump(),
            "redis_url": f"redis://127.0.0.1:{local.free_port()}/0",
            "broker_url": settings.redis_url[:-1] + "5",
        }
    )
    log = tmp_path_factory.mktemp("no-events") / "worker.log"
    worker = start_worker(broken, log, "--concurrency=1", "--hostname=noevents@%h")
    served = ServedApp(create_app(broken))
    yield Api(served.base)
    served.close()
    worker.stop()


def test_jobs_run_as_usual_when_events_cannot_be_published(no_events: Api) -> None:
    started = time.monotonic()
    job = no_events.submit_and_wait("/api/v1/jobs", {"type": "sleep", "params": {"seconds": 1}})
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert time.monotonic() - started < 20


def test_a_stream_without_redis_is_a_503_problem(no_events: Api, store: JobStore) -> None:
    job_id = no_events.post("/api/v1/jobs", json={"type": "noop", "params": {}}).json()["id"]
    for path in (f"/api/v1/jobs/{job_id}/events", "/api/v1/events"):
        response = no_events.get(path)
        assert response.status_code == 503
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.headers["Retry-After"]


def test_publishing_to_an_unreachable_redis_neither_raises_nor_waits() -> None:
    publisher = events.Publisher(f"redis://127.0.0.1:{local.free_port()}/0")
    change = events.message({"_id": "x", "type": "bmi", "attempts": 1}, "running")
    started = time.monotonic()
    assert publisher.publish(change) is False
    assert publisher.publish(change) is False  # quiet for a while: no second timeout
    assert time.monotonic() - started < events.PUBLISH_TIMEOUT * 4 + 1


def test_a_published_change_reaches_both_channels(settings: Settings) -> None:
    sub = Subscription(settings, events.job_channel("j1"), events.GLOBAL_CHANNEL).ready()
    job = {"_id": "j1", "type": "bmi", "attempts": 2, "owner": "team-a"}
    events.job_changed(settings, job, "succeeded", result={"bmi": 1.0})
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        reply = sub.pubsub.get_message(timeout=0.5)
        if reply and reply["type"] == "message":
            got.append((reply["channel"].decode(), json.loads(reply["data"])))
    sub.close()
    assert {channel for channel, _ in got} == {"jobline:job:j1", "jobline:jobs"}
    body = got[0][1]
    assert body["status"] == "succeeded" and body["attempts"] == 2 and body["progress"] == 1.0
    assert body["result"] == {"bmi": 1.0} and body["owner"] == "team-a"


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ({"status": "queued", "attempts": 0}, {"status": "running", "attempts": 1}),
        ({"status": "running", "attempts": 1}, {"status": "retrying", "attempts": 1}),
        ({"status": "retrying", "attempts": 1}, {"status": "running", "attempts": 2}),
        (
            {"status": "running", "attempts": 1, "progress": 0.2},
            {"status": "running", "attempts": 1, "progress": 0.7},
        ),
        (
            {"status": "running", "attempts": 1, "progress": 0.9},
            {"status": "cancelled", "attempts": 1},
        ),
        ({"status": "queued", "attempts": 0}, {"status": "cancelled", "attempts": 0}),
        ({"status": "running", "attempts": 2}, {"status": "queued", "attempts": 2}),
        ({"status": "scheduled", "attempts": 0}, {"status": "running", "attempts": 1}),
        ({"status": "running", "attempts": 1}, {"status": "succeeded", "attempts": 1}),
        ({"status": "retrying", "attempts": 1}, {"status": "cancelled", "attempts": 1}),
        ({"status": "running", "attempts": 2}, {"status": "failed", "attempts": 2}),
    ],
)
def test_versions_order_the_states_of_a_job(earlier: dict[str, Any], later: dict[str, Any]) -> None:
    assert events.version(earlier) < events.version(later)


# -- publishing only while someone listens --------------------------------------------
# Pub/sub channels are shared by every database of a redis-server, and the
# suite's shared server has other tests' streams: these run on a server of their own.


def alone_on(settings: Settings, url: str) -> Settings:
    return Settings(**{**settings.model_dump(), "redis_url": url, "broker_url": None})


@pytest.fixture
def quiet_redis(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a redis-server nothing else uses or publishes on."""
    server, url = local.start_redis(tmp_path / "redis", aof=False)
    yield alone_on(settings, url)
    server.stop()


@pytest.fixture(scope="module")
def own_redis(
    settings: Settings, store: JobStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """An API and a worker on a redis-server of their own."""
    tmp = tmp_path_factory.mktemp("listeners")
    server, url = local.start_redis(tmp / "redis", aof=False)
    alone = alone_on(settings, url)
    worker = start_worker(alone, tmp / "worker.log", "--concurrency=1", "--hostname=alone@%h")
    served = ServedApp(create_app(alone))
    yield Api(served.base)
    served.close()
    worker.stop()
    server.stop()


def publishes(client: redis.Redis) -> int:
    """How many PUBLISH commands the server has run."""
    stats = client.info("commandstats").get("cmdstat_publish", {})
    return int(stats.get("calls", 0))


def test_nothing_is_published_while_nobody_listens_and_all_is_once_a_stream_is_ready(
    quiet_redis: Settings,
) -> None:
    alone = quiet_redis
    client = redis.Redis.from_url(alone.redis_url)
    publisher = events.Publisher(alone.redis_url)
    change = events.message({"_id": "j2", "type": "noop", "attempts": 1}, "running")
    before = publishes(client)
    assert publisher.publish(change) is False
    assert publisher.publish_to_job({"id": "j2", "event": "log", "items": []}) is False
    assert publishes(client) == before
    # The publisher counted nobody a moment ago; the subscription is ready only
    # once that count has lapsed, so the very next change goes out.
    sub = Subscription(alone, events.job_channel("j2")).ready()
    try:
        assert publisher.publish(change) is True
        assert publishes(client) == before + 2  # the job's channel and the global one
        reply = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = sub.pubsub.get_message(timeout=0.5)
            if reply and reply["type"] == "message":
                break
        assert reply is not None and json.loads(reply["data"])["status"] == "running"
    finally:
        sub.close()


def test_a_stream_opened_while_the_worker_counts_no_listener_still_ends_with_the_job(
    own_redis: Api, store: JobStore
) -> None:
    api = own_redis
    # Nobody listens on this server: the worker's publisher counts none when
    # the job starts, and trusts that count for longer than the job runs.
    job_id = api.post("/api/v1/jobs", json={"type": "test_slow", "params": {"seconds": 0.3}})
    job_id = job_id.json()["id"]
    deadline = time.monotonic() + 20
    while store.get(job_id)["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)
    response = stream(api, f"/api/v1/jobs/{job_id}/events", timeout=10)
    received = [data for name, data in read_events(response) if name == "job"]
    assert received[-1]["status"] == "succeeded"
    assert received[-1]["progress"] == 1.0
