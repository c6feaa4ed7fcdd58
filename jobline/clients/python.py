"""The Python client: ``jobline.Client(url, api_key=None)``.

Every error the API answers becomes an :class:`ApiError` carrying its problem
document; a server that cannot be reached is :class:`Unreachable`.
"""

from __future__ import annotations

import builtins
import contextlib
import mimetypes
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import httpx_sse

DEFAULT_URL = "http://127.0.0.1:5000"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# The server sends a keep-alive comment every 15 s; twice that in silence is a dead stream.
STREAM_READ_TIMEOUT = 35.0
POLL_INTERVAL = 0.5

Job = dict[str, Any]
ProgressCallback = Callable[[Job], None]


class ClientError(Exception):
    """Base class of the errors the client raises."""


class ApiError(ClientError):
    """The API refused a request; ``problem`` is its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or ""
        super().__init__(f"{status} {problem.get('title', '')}: {detail}".strip(": "))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """One entry per bad field: ``{"loc": [...], "msg": ...}``."""
        return list(self.problem.get("errors") or [])


class Unreachable(ClientError):
    """The API could not be reached (connection refused, timed out)."""


class WaitTimeout(ClientError, TimeoutError):
    """The job did not end within the time given to :meth:`Client.wait`."""


class Client:
    """A jobline API at ``url``, optionally with an API key (sent as a Bearer token)."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- requests --------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def submit(
        self,
        type: str,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Submit a job of ``type``; options are ``run_at``, ``delay_seconds``, ``priority``…"""
        body = {"type": type, "params": params or {}, **options}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/jobs", json=body, headers=headers).json()  # type: ignore[no-any-return]

    def get(self, job_id: str) -> Job:
        return self._request("GET", f"/jobs/{job_id}").json()  # type: ignore[no-any-return]

    def list(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of jobs, newest first: ``{"items": [...], "next_cursor": ...}``."""
        query = {"status": status, "type": type, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in query.items() if v is not None}
        return self._request("GET", "/jobs", params=params).json()  # type: ignore[no-any-return]

    def iter_jobs(self, *, status: str | None = None, type: str | None = None) -> Iterator[Job]:
        """Every job matching the filters, newest first, fetching pages as needed."""
        cursor = None
        while True:
            page = self.list(status=status, type=type, limit=500, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel(self, job_id: str) -> Job:
        return self._request("POST", f"/jobs/{job_id}/cancel").json()  # type: ignore[no-any-return]

    def retry(self, job_id: str) -> Job:
        return self._request("POST", f"/jobs/{job_id}/retry").json()  # type: ignore[no-any-return]

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def job_types(self) -> builtins.list[dict[str, Any]]:
        body = self._request("GET", "/job-types").json()
        return body["items"] if isinstance(body, dict) else body  # type: ignore[no-any-return]

    # -- workflows ------------------------------------------------------------

    def submit_workflow(
        self,
        steps: builtins.list[dict[str, Any]],
        *,
        priority: int | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Submit a workflow: ``[{"id", "type", "params", "needs", "for_each"}, ...]``."""
        body: dict[str, Any] = {"steps": steps}
        if priority is not None:
            body["priority"] = priority
        if callback_url is not None:
            body["callback_url"] = callback_url
        return self._request("POST", "/workflows", json=body).json()  # type: ignore[no-any-return]

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._request("GET", f"/workflows/{workflow_id}").json()  # type: ignore[no-any-return]

    def list_workflows(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of workflows, newest first: ``{"items": [...], "next_cursor": ...}``."""
        query = {"status": status, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in query.items() if v is not None}
        return self._request("GET", "/workflows", params=params).json()  # type: ignore[no-any-return]

    def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._request("POST", f"/workflows/{workflow_id}/cancel").json()  # type: ignore[no-any-return]

    def retry_workflow(self, workflow_id: str) -> dict[str, Any]:
        return self._request("POST", f"/workflows/{workflow_id}/retry").json()  # type: ignore[no-any-return]

    def delete_workflow(self, workflow_id: str) -> None:
        self._request("DELETE", f"/workflows/{workflow_id}")

    def wait_workflow(
        self,
        workflow_id: str,
        timeout: float | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 1.0,
    ) -> dict[str, Any]:
        """The workflow once it has ended, looking every ``interval`` seconds.

        ``on_change(workflow)`` whenever its status, a step's status or a
        step's count moved; WaitTimeout after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Any = None
        while True:
            workflow = self.get_workflow(workflow_id)
            seen = (workflow["status"], [(s["status"], s.get("done")) for s in workflow["steps"]])
            if on_change is not None and seen != last:
                on_change(workflow)
            last = seen
            if workflow["status"] in TERMINAL:
                return workflow
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"workflow {workflow_id} still {workflow['status']}")
            time.sleep(interval)

    # -- logs and files ---------------------------------------------------------

    def log_page(
        self,
        job_id: str,
        *,
        attempt: int | None = None,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> dict[str, Any]:
        """One page of the job's log: ``{"items", "truncated", "next_cursor"}``."""
        query = {"attempt": attempt, "cursor": cursor, "limit": limit}
        params = {k: v for k, v in query.items() if v is not None}
        return self._request("GET", f"/jobs/{job_id}/logs", params=params).json()  # type: ignore[no-any-return]

    def logs(
        self, job_id: str, *, attempt: int | None = None, page_size: int = 1000
    ) -> builtins.list[dict[str, Any]]:
        """Every line the job has logged so far, in order (read ``page_size`` at a time)."""
        lines: builtins.list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.log_page(job_id, attempt=attempt, cursor=cursor, limit=page_size)
            lines += page["items"]
            cursor = page.get("next_cursor")
            if not cursor or not page["items"]:
                return lines

    def follow_logs(
        self, job_id: str, *, attempt: int | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each line of the job's log as it is stored, until the job ends (or ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = None
        while True:
            page = self.log_page(job_id, attempt=attempt, cursor=cursor)
            yield from page["items"]
            if page.get("next_cursor") is None:
                return  # the job has ended and this was its last line
            cursor = page["next_cursor"]
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still logging after {timeout}s")
            if not page["items"]:
                time.sleep(POLL_INTERVAL)

    def upload(self, path: str | Path, content_type: str | None = None) -> dict[str, Any]:
        """Upload a file for jobs to read (streamed); its record, whose ``id`` is a FileRef."""
        path = Path(path)
        kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as f:
            response = self._request("POST", "/files", files={"file": (path.name, f, kind)})
        return response.json()  # type: ignore[no-any-return]

    def list_files(
        self, *, kind: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of files, newest first: uploads and what jobs made, or one ``kind`` of
        them (``upload``, ``output``): ``{"items", "next_cursor"}``."""
        query = {"kind": kind, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in query.items() if v is not None}
        return self._request("GET", "/files", params=params).json()  # type: ignore[no-any-return]

    def file(self, file_id: str) -> dict[str, Any]:
        """An uploaded file's record: name, size, content type, sha256, expiry."""
        return self._request("GET", f"/files/{file_id}").json()  # type: ignore[no-any-return]

    def delete_file(self, file_id: str) -> None:
        self._request("DELETE", f"/files/{file_id}")

    def download(self, job_id: str, name: str, path: str | Path | None = None) -> Path:
        """Save a file the job made to ``path`` (default: its name, here); returns the path."""
        target = Path(path) if path is not None else Path(name)
        url = f"/jobs/{job_id}/files/{quote(name, safe='')}"
        try:
            with self.http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                with target.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.url}: {exc}") from exc
        return target

    # -- following a job ------------------------------------------------------

    def events(self, job_id: str, read_timeout: float = STREAM_READ_TIMEOUT) -> Generator[Job]:
        """The job's event stream: the job as stored, then each change, until it ends."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        try:
            with httpx_sse.connect_sse(
                self.http, "GET", f"/jobs/{job_id}/events", timeout=timeout
            ) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise _api_error(source.response)
                for event in source.iter_sse():
                    if event.event == "job":
                        yield event.json()
        except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError):
            return  # a silent or dropped stream ends; the caller may reconnect
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.url}: {exc}") from exc

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Job:
        """Follow the job until it ends and return it; ``on_progress(job)`` on each change.

        Follows the job's event stream (reconnecting when the server ends it) and
        falls back to polling when the stream is unavailable. WaitTimeout after
        ``timeout`` seconds, checked at every change, so a job that keeps
        reporting progress cannot hold the wait past it; a stream that falls
        silent is given up after the time that was left when it connected.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job: Job = {}

        def left() -> float:
            return STREAM_READ_TIMEOUT if deadline is None else deadline - time.monotonic()

        while True:
            if left() <= 0:
                raise WaitTimeout(f"job {job_id} still {job.get('status', 'unknown')}")
            try:
                job, received = self._follow(job_id, job, left, on_progress)
            except ApiError as exc:
                if exc.status != 503:
                    raise
                return self._poll(job_id, deadline, on_progress)  # no live events: poll
            if job.get("status") in TERMINAL:
                return self.get(job_id)
            # The stream ended before the job did (its lifetime, a timeout): reconnect.
            if not received:
                time.sleep(max(0.0, min(POLL_INTERVAL, left())))

    def _follow(
        self,
        job_id: str,
        job: Job,
        left: Callable[[], float],
        on_progress: ProgressCallback | None,
    ) -> tuple[Job, int]:
        """One connection to the job's stream, until it ends, the job ends or ``left()`` is up.

        Returns the job as last seen and how many changes came.
        """
        received = 0
        stream = self.events(job_id, read_timeout=min(left(), STREAM_READ_TIMEOUT))
        with contextlib.closing(stream):
            for change in stream:
                received += 1
                job = {**job, **change}
                if on_progress is not None:
                    on_progress(job)
                # Changes may keep coming past the deadline: it is checked at each one.
                if job.get("status") in TERMINAL or left() <= 0:
                    break
        return job, received

    def _poll(
        self, job_id: str, deadline: float | None, on_progress: ProgressCallback | None
    ) -> Job:
        last: tuple[Any, ...] = ()
        while True:
            job = self.get(job_id)
            seen = (job.get("status"), job.get("progress"), job.get("progress_message"))
            if on_progress is not None and seen != last:
                on_progress(job)
            last = seen
            if job.get("status") in TERMINAL:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"job {job_id} still {job.get('status')}")
            time.sleep(POLL_INTERVAL if left is None else min(POLL_INTERVAL, left))


def _api_error(response: httpx.Response) -> ApiError:
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError("not an object")
    except ValueError:
        problem = {
            "type": "about:blank",
            "title": response.reason_phrase,
            "status": response.status_code,
            "detail": response.text[:500],
            "errors": [],
        }
    return ApiError(response.status_code, problem)
