"""The benchmark harness runs and reports: a smoke run, no timing asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report

ROOT = Path(__file__).resolve().parent.parent


def smoke_run(tmp_path: Path, only: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``python -m bench --smoke --only ONLY``, as the harness runs it; its output and results."""
    out = tmp_path / "latest.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", only, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(out.read_text())


@pytest.mark.timeout(180)
def test_a_quick_engine_run_writes_results_with_versions_and_figures(tmp_path: Path) -> None:
    done, results = smoke_run(tmp_path, "engine")
    assert results["mode"] == "smoke"
    assert results["cores"] == os.cpu_count()
    for package in ("python", "celery", "redis-server", "secantusdb", "jobline"):
        assert results["versions"][package], package
    celery = results["engine"]["celery"]
    assert celery["n"] == 100
    assert celery["enqueued_per_s"] > 0 and celery["processed_per_s"] > 0
    for peer in ("rq", "dramatiq"):
        assert "processed_per_s" in results["engine"][peer] or "skipped" in results["engine"][peer]
    assert {t["target"] for t in results["targets"]} >= {"reads p99 ≤ 20 ms"}
    assert "| engine: celery | processed/s |" in done.stdout


def test_targets_say_met_not_met_or_not_measured() -> None:
    results = {
        "engine": {"celery": {"enqueued_per_s": 1000.0, "processed_per_s": 500.0}},
        "peers": {"seed": {"jobs_per_s": 300.0}, "celery_mongodb": {"jobs_per_s": 250.0}},
        "pipeline": {"jobs_per_s": 400.0, "submit": {"per_s": 450.0}},
        "e2e": {"p50_ms": 40.0},
    }
    met = {t["target"]: t["met"] for t in report.targets(results)}
    assert met["pipeline ≥ 0.3 × raw Celery"] is True
    assert met["pipeline ≥ 1.0 × the seed's design"] is True
    assert met["pipeline ≥ 2 × Celery's MongoDB backend"] is False
    assert met["end-to-end p50 ≤ 25 ms"] is False
    assert met["reads p99 ≤ 20 ms"] is None


@pytest.mark.timeout(180)
def test_a_quick_peers_run_reports_the_pipelines_ratio_to_each_peer(tmp_path: Path) -> None:
    done, results = smoke_run(tmp_path, "peers,floor,pipeline,monitored")
    for peer in ("seed", "celery_mongodb"):
        # wrk stops each connection after its share; answers already on the way still count.
        assert results["peers"][peer]["n"] >= 100
        assert results["peers"][peer]["jobs_per_s"] > 0
    assert results["ratios"]["pipeline_vs_seed_design"] > 0
    assert results["ratios"]["pipeline_vs_celery_mongodb_backend"] > 0
    assert "| the seed's design |" in done.stdout
    # The same pipeline while Flower watches: its jobs/s, and what Flower itself costs.
    assert results["monitored"]["jobs_per_s"] > 0
    assert results["monitored"]["cpu_ms_per_job"]["flower"] > 0
    assert results["ratios"]["monitored_vs_pipeline"] > 0
    assert "| pipeline, Flower watching | jobs/s end to end |" in done.stdout
    # The store's floor: each design's writes, measured on the same server.
    floor = results["floor"]
    shapes = ("seed", "celery_mongodb", "claim_no_index", "claim_status_index", "jobline",
              "jobline_pure", "jobline_auth")  # fmt: skip
    assert all(floor[shape]["server_cpu_ms_per_job"] > 0 for shape in shapes)
    assert all(floor[shape]["ceiling_jobs_per_s"] > 0 for shape in shapes)
    claimed_first = "| jobline's store, as run here (auth off), a job claimed before it runs |"
    assert claimed_first in done.stdout
    assert "| the same, a short pure job: start and result in one update |" in done.stdout
