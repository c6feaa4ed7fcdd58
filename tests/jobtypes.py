"""Job types that exist only for the tests, loaded through JOBLINE_JOB_MODULES."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time

from pydantic import BaseModel, ConfigDict

from jobline.core.errors import TransientError
from jobline.jobs import Context, FileRef, RetryPolicy, job_type


class Nothing(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Flaky(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failures: int = 2


@job_type(
    "test_flaky",
    params=Flaky,
    retry=RetryPolicy(max_retries=3, backoff_seconds=0.2, backoff_max_seconds=0.5),
)
def flaky(ctx: Context, params: Flaky) -> dict[str, int]:
    """Fails with a transient error on its first ``failures`` attempts."""
    if ctx.attempt <= params.failures:
        raise TransientError(f"attempt {ctx.attempt} failed on purpose")
    return {"attempt": ctx.attempt}


@job_type(
    "test_always_fails",
    params=Nothing,
    retry=RetryPolicy(max_retries=2, backoff_seconds=0.1, backoff_max_seconds=0.2),
)
def always_fails(ctx: Context, params: Nothing) -> None:
    """Never succeeds."""
    raise TransientError("this job always fails")


@job_type("test_broken", params=Nothing)
def broken(ctx: Context, params: Nothing) -> None:
    """Fails with a permanent error: not retried."""
    raise ValueError("bad data")


class Hang(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 60


@job_type("test_hang", params=Hang, soft_time_limit=1, time_limit=2)
def hang(ctx: Context, params: Hang) -> None:
    """Sleeps in one uninterruptible call, ignoring the soft limit; the hard one ends it."""
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(params.seconds)
        except BaseException:  # swallow the soft time limit on purpose
            continue


@job_type("test_pure_hang", params=Hang, soft_time_limit=1, time_limit=2, pure=True)
def pure_hang(ctx: Context, params: Hang) -> None:
    """test_hang as a pure type: its hard time limit ends it before any claim delay would."""
    hang(ctx, params)


def note(journal: str | None, *words: object) -> None:
    """Append one line to a journal file the test reads back (one write, so lines never mix)."""
    if journal:
        with open(journal, "a") as f:
            f.write(" ".join(str(w) for w in words) + "\n")


class Slow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 1.0
    journal: str | None = None


@job_type("test_slow", params=Slow)
def slow(ctx: Context, params: Slow) -> dict[str, int]:
    """Works for ``seconds``, reporting progress; notes each attempt's start and end. Pure."""
    note(params.journal, "start", ctx.job_id, ctx.attempt, os.getpid())
    steps = max(1, int(params.seconds * 10))
    for step in range(steps):
        time.sleep(params.seconds / steps)
        ctx.progress((step + 1) / steps)
    note(params.journal, "end", ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt}


@job_type("test_deaf", params=Slow)
def deaf(ctx: Context, params: Slow) -> None:
    """Ticks into its journal for ``seconds``; never reports progress, so never hears a cancel."""
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        note(params.journal, "tick", ctx.job_id, os.getpid())
        time.sleep(0.2)


@job_type("test_pure_deaf", params=Slow, pure=True)
def pure_deaf(ctx: Context, params: Slow) -> dict[str, int]:
    """test_deaf as a pure type: its start may be written late; notes its start, ticks and end."""
    note(params.journal, "start", ctx.job_id, ctx.attempt, os.getpid())
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        note(params.journal, "tick", ctx.job_id, os.getpid())
        time.sleep(0.2)
    note(params.journal, "end", ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt}


@job_type(
    "test_fails_slowly",
    params=Nothing,
    retry=RetryPolicy(max_retries=2, backoff_seconds=1.5, backoff_max_seconds=3, jitter=False),
)
def fails_slowly(ctx: Context, params: Nothing) -> None:
    """Always fails with a transient error, waiting long enough between tries to be seen."""
    raise TransientError(f"attempt {ctx.attempt} failed on purpose")


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    times: int = 1


class Greeted(BaseModel):
    text: str


@job_type("test_greet", params=Greeting, result=Greeted, soft_time_limit=5, time_limit=10)
def greet(ctx: Context, params: Greeting) -> Greeted:
    """A type a team might add: one model in, one model out."""
    ctx.progress(0.5, "greeting")
    return Greeted(text=" ".join([f"hello {params.name}"] * params.times))


class Ordered(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = ""


@job_type("test_ordered", params=Ordered, queue="test_priority", soft_time_limit=5, time_limit=10)
def ordered(ctx: Context, params: Ordered) -> None:
    """Runs on its own queue, which only the priority test's worker consumes."""
    time.sleep(0.02)


class Items(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = 3
    bad_at: int | None = None


@job_type("test_items", params=Items, soft_time_limit=5, time_limit=10)
def items(ctx: Context, params: Items) -> list[dict[str, object]]:
    """A list of greeting params to fan out over; ``bad_at`` makes one item a bad one."""
    return [
        {"name": f"n{i}"} if i != params.bad_at else {"name": f"n{i}", "times": "many"}
        for i in range(params.count)
    ]


class Listed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, object]]


@job_type("test_list", params=Listed, soft_time_limit=5, time_limit=10)
def listed(ctx: Context, params: Listed) -> list[dict[str, object]]:
    """Returns the items it was given: a fan-out over exactly these params."""
    return params.items


@job_type("test_inputs", params=Nothing, soft_time_limit=5, time_limit=10)
def echo_inputs(ctx: Context, params: Nothing) -> dict[str, object]:
    """Returns the inputs a workflow step was given."""
    return {"inputs": ctx.inputs}


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unless: str


@job_type("test_gate", params=Gate, soft_time_limit=5, time_limit=10)
def gate(ctx: Context, params: Gate) -> dict[str, bool]:
    """Fails for good until the file ``unless`` exists (a test creates it, then retries)."""
    if not os.path.exists(params.unless):
        raise ValueError(f"{params.unless} does not exist yet")
    return {"passed": True}


@job_type("test_dies_after_success", params=Nothing, soft_time_limit=5, time_limit=10)
def dies_after_success(ctx: Context, params: Nothing) -> dict[str, bool]:
    """Succeeds, and then its worker is SIGKILLed after the success is recorded but before
    the workflow hears of it: the crash the sweeper's workflow pass repairs."""
    import signal

    from jobline.engine.workflows.progress import Progression

    def die(*args: object, **kwargs: object) -> None:
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    Progression.job_ended = die  # type: ignore[method-assign]
    return {"done": True}


class Named(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


@job_type("test_named", params=Named, soft_time_limit=5, time_limit=10)
def named(ctx: Context, params: Named) -> dict[str, str]:
    """Returns its name at once, reporting no progress: the cheapest job a fan-out can run."""
    return {"name": params.name}


class Chatty(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: int = 3
    secret: str = ""
    fail_first: bool = False


@job_type(
    "test_chatty",
    params=Chatty,
    retry=RetryPolicy(max_retries=1, backoff_seconds=0.1, backoff_max_seconds=0.1),
)
def chatty(ctx: Context, params: Chatty) -> dict[str, int]:
    """Writes through a logger of its own, print and stderr; fails its first attempt if asked."""
    logger = logging.getLogger("team.report")
    logger.debug("below INFO: never captured")
    logger.info("attempt %d starts; token %s", ctx.attempt, params.secret)
    for i in range(params.lines):
        print(f"line {i}")
    print("to stderr", file=sys.stderr)
    if params.fail_first and ctx.attempt == 1:
        raise TransientError("first attempt fails on purpose")
    logger.warning("done")
    return {"attempt": ctx.attempt}


class Programs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str = ""
    leave_running: bool = False


@job_type("test_programs", params=Programs, soft_time_limit=10, time_limit=20)
def programs(ctx: Context, params: Programs) -> None:
    """Writes as a job that runs programs does: through a child process and straight to fd 1."""
    print(f"python {params.tag}")
    child = "import sys; print('child out'); print('child err', file=sys.stderr)"
    subprocess.run([sys.executable, "-c", child], check=True)
    os.write(1, f"raw {params.tag}\n".encode())
    given = [sys.executable, "-c", "print('given sys.stdout')"]
    subprocess.run(given, stdout=sys.stdout, check=True)
    logging.getLogger("jobline.engine.worker").warning("the worker's own line %s", params.tag)
    if params.leave_running:  # a program that outlives the job
        later = f"import time; time.sleep(0.5); print('left behind {params.tag}', flush=True)"
        subprocess.Popen([sys.executable, "-c", later])
    print(f"after {params.tag}")
    os.write(1, f"tail {params.tag}".encode())  # no newline: still a line of its own


_kept: list[logging.Handler] = []


@job_type("test_keeps_a_handler", params=Programs, soft_time_limit=10, time_limit=20)
def keeps_a_handler(ctx: Context, params: Programs) -> None:
    """Logs through a StreamHandler its first run made on sys.stderr, as a library set up
    lazily does; the logger does not propagate, so that handler alone writes the line."""
    logger = logging.getLogger("team.kept")
    if not _kept:
        _kept.append(logging.StreamHandler())  # the running job's sys.stderr
        logger.addHandler(_kept[0])
        logger.propagate = False
    logger.warning("kept %s", params.tag)


class Maker(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: FileRef | None = None
    outputs: dict[str, str] = {}
    wait: float = 0.0
    fail: bool = False
    per_attempt: bool = False


@job_type("test_maker", params=Maker, soft_time_limit=60, time_limit=70)
def maker(ctx: Context, params: Maker) -> dict[str, int]:
    """Waits, copies its source file to ``copy.bin`` and saves each output; may fail after."""
    time.sleep(params.wait)
    size = 0
    if params.source is not None:
        with ctx.open(params.source) as source:
            data = source.read()
        size = len(data)
        ctx.save("copy.bin", io.BytesIO(data))
    for name, text in params.outputs.items():
        ctx.save(name, f"{text} (attempt {ctx.attempt})".encode(), content_type="text/plain")
    if params.per_attempt:
        ctx.save(f"attempt-{ctx.attempt}.txt", b"made by this attempt")
    if params.fail:
        raise ValueError("failed after saving its files")
    return {"size": size}


@job_type("test_licensed", params=Slow, max_running=1, soft_time_limit=30, time_limit=40)
def licensed(ctx: Context, params: Slow) -> dict[str, int]:
    """Uses a licence only one job may hold at a time: its type allows one running."""
    time.sleep(params.seconds)
    return {"attempt": ctx.attempt}
