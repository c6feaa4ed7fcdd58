"""A pool process's descriptors 1 and 2: a job's while it runs, the worker's otherwise.

Each case runs in a process of its own, as a pool process would: redirecting
the descriptors of pytest's own process would take them from its capture.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

PRELUDE = """
import json, logging, os, subprocess, sys, time
from jobline.engine import program_output
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="worker: %(message)s")
program_output.install()
output = program_output.current()
got = {"stdout": [], "stderr": []}
report_to = output.before[1]  # the case's own stdout, as it was before

def report(**found):
    output.catch_up()  # what passed through is written out first
    os.write(report_to, (json.dumps(found) + "\\n").encode())
"""


def run_case(body: str) -> tuple[dict[str, Any], list[str], str]:
    """The case's report, the other lines of its stdout, and its stderr."""
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    *before, last = done.stdout.strip().splitlines()
    return json.loads(last), before, done.stderr


def test_what_is_written_while_attached_is_the_jobs_and_the_rest_passes_through() -> None:
    found, stdout, stderr = run_case(
        """
        os.write(1, b"before the job\\n")
        output.attach({name: got[name].append for name in got})
        os.write(1, b"one\\n")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('two\\\\n')"])
        logging.getLogger("jobline.engine.worker").info("the worker's own record")
        output.detach()
        os.write(1, b"after the job\\n")
        report(**{name: "".join(parts) for name, parts in got.items()})
        """
    )
    assert found == {"stdout": "one\n", "stderr": "two\n"}
    assert stdout == ["before the job", "after the job"]
    assert "worker: the worker's own record" in stderr


def test_a_job_that_closes_its_stdout_leaves_the_reader_idle_and_its_end_prompt() -> None:
    found, _, _ = run_case(
        """
        output.attach({name: got[name].append for name in got})
        os.write(2, b"said\\n")
        os.close(1)
        started, cpu = time.monotonic(), time.process_time()
        time.sleep(0.5)
        print("still printing", file=sys.stderr)
        output.detach()
        ended = time.monotonic() - started - 0.5
        nxt = {"stdout": [], "stderr": []}
        output.attach({name: nxt[name].append for name in nxt})
        os.write(1, b"the next job's\\n")
        output.detach()
        report(
            stderr="".join(got["stderr"]),
            end_s=ended,
            cpu_s=time.process_time() - cpu,
            next_stdout="".join(nxt["stdout"]),
        )
        """
    )
    assert found["stderr"] == "said\nstill printing\n"  # stderr is still the job's
    assert found["end_s"] < 1.0
    assert found["cpu_s"] < 0.25  # the reader does not spin on the closed pipe
    assert found["next_stdout"] == "the next job's\n"  # the next job has a stdout again


def test_a_program_a_job_left_running_writes_to_the_workers_output_not_the_next_jobs() -> None:
    found, stdout, _ = run_case(
        """
        output.attach({name: got[name].append for name in got})
        ticks = "import time\\nfor i in range(6): print('tick', i, flush=True); time.sleep(0.2)"
        left = subprocess.Popen([sys.executable, "-c", ticks])
        deadline = time.monotonic() + 20
        while not got["stdout"] and time.monotonic() < deadline:  # its first line is the job's
            time.sleep(0.01)
        output.detach()
        nxt = {"stdout": [], "stderr": []}
        output.attach({name: nxt[name].append for name in nxt})
        left.wait()
        os.write(1, b"the next job's own\\n")
        output.detach()
        report(first="".join(got["stdout"]), next="".join(nxt["stdout"]))
        """
    )
    assert found["next"] == "the next job's own\n"  # no tick of the program left running
    first = found["first"].splitlines()  # tick 0, and any written before the job ended
    assert first[0] == "tick 0"
    assert first + stdout == [f"tick {i}" for i in range(6)]  # the rest: the worker's output
