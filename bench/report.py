"""Ratios, targets and the printed table, all computed from the results dict."""

from __future__ import annotations

from typing import Any


def _get(results: dict[str, Any], *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """Each figure against raw Celery's, in the same run."""
    celery_done = _get(r, "engine", "celery", "processed_per_s")
    celery_sent = _get(r, "engine", "celery", "enqueued_per_s")
    return {
        "pipeline_vs_celery_processed": _ratio(_get(r, "pipeline", "jobs_per_s"), celery_done),
        "pipeline_submit_vs_celery_enqueued": _ratio(
            _get(r, "pipeline", "submit", "per_s"), celery_sent
        ),
        "pipeline_vs_seed_design": _ratio(
            _get(r, "pipeline", "jobs_per_s"), _get(r, "peers", "seed", "jobs_per_s")
        ),
        "pipeline_vs_celery_mongodb_backend": _ratio(
            _get(r, "pipeline", "jobs_per_s"), _get(r, "peers", "celery_mongodb", "jobs_per_s")
        ),
        "monitored_vs_pipeline": _ratio(
            _get(r, "monitored", "jobs_per_s"), _get(r, "pipeline", "jobs_per_s")
        ),
        "rq_vs_celery_processed": _ratio(_get(r, "engine", "rq", "processed_per_s"), celery_done),
        "dramatiq_vs_celery_processed": _ratio(
            _get(r, "engine", "dramatiq", "processed_per_s"), celery_done
        ),
    }


def _worker_growth(r: dict[str, Any]) -> float | None:
    first = _get(r, "memory", "worker_after_pipeline", "total_mb")
    last = _get(r, "memory", "worker_end", "total_mb")
    return round((last - first) / first, 3) if first and last else None


def _read_p99(r: dict[str, Any]) -> float | None:
    return _worst(r, "get_one", "list_first", "list_all", "list_deep")


def _worst(r: dict[str, Any], *reads: str) -> float | None:
    found = [_get(r, "read", k, "p99_ms") for k in reads]
    values = [v for v in found if v is not None]
    return max(values) if values else None


def _batch_10k(r: dict[str, Any]) -> float | None:
    seconds, n = _get(r, "batch", "seconds"), _get(r, "batch", "n")
    return round(seconds * 10_000 / n, 2) if seconds is not None and n else None


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the figure measured (None: not measured)."""
    rate = _get(r, "submit", "target_per_s")
    ratio = r["ratios"] if "ratios" in r else ratios(r)
    checks = [
        ("pipeline ≥ 1.0 × the seed's design", "ratio", ratio["pipeline_vs_seed_design"],
         ">=", 1.0),
        ("pipeline ≥ 2 × Celery's MongoDB backend", "ratio",
         ratio["pipeline_vs_celery_mongodb_backend"], ">=", 2.0),
        ("pipeline ≥ 0.3 × raw Celery", "ratio", ratio["pipeline_vs_celery_processed"], ">=", 0.3),
        ("sequential submit p50 ≤ 5 ms, worker consuming", "ms",
         _get(r, "submit_sequential", "p50_ms"), "<=", 5),
        ("sequential submit p99 ≤ 15 ms, worker consuming", "ms",
         _get(r, "submit_sequential", "p99_ms"), "<=", 15),
        (f"submit p99 ≤ 25 ms at {rate or 200:.0f}/s", "ms", _get(r, "submit", "p99_ms"), "<=", 25),
        ("list first page p99 ≤ 50 ms", "ms", _worst(r, "list_first", "list_all"), "<=", 50),
        ("end-to-end p50 ≤ 25 ms", "ms", _get(r, "e2e", "p50_ms"), "<=", 25),
        ("reads p99 ≤ 20 ms", "ms", _read_p99(r), "<=", 20),
        ("batch of 10,000 ≤ 3 s", "s", _batch_10k(r), "<=", 3),
        ("API process RSS ≤ 100 MB", "MB", _get(r, "memory", "api_end", "largest_child_mb"),
         "<=", 100),
        ("worker RSS growth ≤ 10 %", "fraction", _worker_growth(r), "<=", 0.10),
]  # fmt: skip
    out = []
    for name, unit, value, op, bound in checks:
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append({"target": name, "unit": unit, "value": value, "bound": bound, "met": met})
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


Row = tuple[str, str, Any, Any, Any]


def _engine_rows(r: dict[str, Any], celery: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for engine in ("celery", "rq", "dramatiq"):
        e = _get(r, "engine", engine) or {}
        for key, measure in (("enqueued_per_s", "enqueued/s"), ("processed_per_s", "processed/s")):
            if key in e:
                base = celery.get(key)
                out.append((f"engine: {engine}", measure, e[key], base, _ratio(e[key], base)))
    for name, label in (
        ("seed", "the seed's design"),
        ("celery_mongodb", "Celery + MongoDB backend"),
    ):
        peer = _get(r, "peers", name) or {}
        if "jobs_per_s" in peer:
            base = celery.get("processed_per_s")
            out.append((f"peer: {label} (HTTP → store)", "jobs/s end to end", peer["jobs_per_s"],
                        base, _ratio(peer["jobs_per_s"], base)))  # fmt: skip
    p = _get(r, "pipeline")
    if p:
        base = celery.get("processed_per_s")
        out.append(("pipeline (HTTP → store)", "jobs/s end to end", p["jobs_per_s"], base,
                    _ratio(p["jobs_per_s"], base)))  # fmt: skip
        for op, count in (p.get("mongo_ops_per_job") or {}).items():
            measure = f"MongoDB {op} round trips per job"
            out.append(("pipeline (HTTP → store)", measure, count, None, None))
        base = celery.get("enqueued_per_s")
        out.append(("pipeline (HTTP → store)", "submitted/s", p["submit"]["per_s"], base,
                    _ratio(p["submit"]["per_s"], base)))  # fmt: skip
    m = _get(r, "monitored")
    if m:
        base = celery.get("processed_per_s")
        out.append(("pipeline, Flower watching", "jobs/s end to end", m["jobs_per_s"], base,
                    _ratio(m["jobs_per_s"], base)))  # fmt: skip
    return out


def _latency_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    s = _get(r, "submit")
    if s:
        label = f"submit at {s['target_per_s']:.0f}/s (got {s['per_s']:.0f}/s)"
        out += [(label, f"{q} ms", s[f"{q}_ms"], None, None) for q in ("p50", "p95", "p99")]
    q = _get(r, "submit_sequential")
    if q:
        label = f"submit, one sequential client (got {q['per_s']:.0f}/s)"
        out += [(label, f"{p} ms", q[f"{p}_ms"], None, None) for p in ("p50", "p95", "p99")]
    a = _get(r, "submit_alone")
    if a:
        label = f"submit at {a['target_per_s']:.0f}/s, no worker (got {a['per_s']:.0f}/s)"
        out += [(label, f"{q} ms", a[f"{q}_ms"], None, None) for q in ("p50", "p95", "p99")]
    m = _get(r, "submit_max")
    if m:
        out.append(("submit, step search", "highest rate with p99 < 50 ms", m["held_per_s"],
                    None, None))  # fmt: skip
    e2e = _get(r, "e2e")
    if e2e:
        out += [("end to end, idle", f"{q} ms", e2e[f"{q}_ms"], None, None) for q in ("p50", "p99")]
    read = _get(r, "read")
    if read:
        label = f"read at {read['jobs_in_store']:,} jobs"
        for k in [k for k in ("get_one", "list_first", "list_all", "list_deep") if k in read]:
            out += [(label, f"{k} {q} ms", read[k][f"{q}_ms"], None, None) for q in ("p50", "p99")]
    batch = _get(r, "batch")
    if batch and "seconds" in batch:
        out.append((f"batch of {batch['n']:,}", "seconds", batch["seconds"], None, None))
    return out


def _memory_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    mem = _get(r, "memory") or {}
    for key in ("api_after_pipeline", "api_end", "worker_after_pipeline", "worker_end"):
        if key in mem:
            api = key.startswith("api")
            jobs = mem[key].get("jobs", mem[key].get("jobs_submitted", "?"))
            what = "API worker RSS MB" if api else "worker RSS MB (all processes)"
            value = mem[key]["largest_child_mb" if api else "total_mb"]
            out.append((f"memory ({key}, {jobs} jobs)", what, value, None, None))
    return out


def rows(r: dict[str, Any]) -> list[Row]:
    """(workload, measure, figure, raw Celery's figure, ratio) for the table."""
    celery = _get(r, "engine", "celery") or {}
    return _engine_rows(r, celery) + _latency_rows(r) + _memory_rows(r)


def cpu_rows(r: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(process, CPU ms per raw Celery task, per pipeline job, per job with Flower
    watching): where the cores go."""
    celery = _get(r, "engine", "celery", "cpu_ms_per_task") or {}
    pipeline = _get(r, "pipeline", "cpu_ms_per_job") or {}
    monitored = _get(r, "monitored", "cpu_ms_per_job") or {}
    names: list[str] = []
    for found in (pipeline, monitored, celery):
        names += [n for n in found if n != "total" and n not in names]
    return [(n, celery.get(n), pipeline.get(n), monitored.get(n)) for n in [*names, "total"]
            if celery or pipeline]  # fmt: skip


FLOOR_SHAPES = (
    ("seed", "the seed's design: insert_one, no index"),
    ("celery_mongodb", "Celery's MongoDB backend: two upserts by _id"),
    ("claim_no_index", "insert, claim, outcome; no secondary index"),
    ("claim_status_index", "the same with the status index"),
    ("jobline", "jobline's store, as run here (auth off), a job claimed before it runs"),
    ("jobline_pure", "the same, a short pure job: start and result in one update"),
    ("jobline_auth", "jobline's store with auth on (owner indexes)"),
)


def floor_rows(r: dict[str, Any]) -> list[str]:
    """What one job's writes cost the embedded server, and the throughput that allows."""
    found = _get(r, "floor")
    if not found:
        return []
    lines = ["", f"| the store's floor ({found['n']:,} jobs each) | SecantusDB CPU per job, ms "
             "| ceiling, jobs/s |", "| --- | ---: | ---: |"]  # fmt: skip
    for key, label in FLOOR_SHAPES:
        shape = found.get(key) or {}
        lines.append(f"| {label} | {_fmt(shape.get('server_cpu_ms_per_job'))} "
                     f"| {_fmt(shape.get('ceiling_jobs_per_s'))} |")  # fmt: skip
    return lines


def table(r: dict[str, Any]) -> str:
    """The results as a Markdown table, with the targets after it."""
    lines = [
        f"jobline benchmarks ({r['mode']} run, {r['cores']} cores, concurrency "
        f"{r['concurrency']}, load average at start {r['load_average'][0]:.2f})",
        "",
        "| workload | measure | figure | raw Celery | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for workload, measure, value, base, ratio in rows(r):
        lines.append(f"| {workload} | {measure} | {_fmt(value)} | {_fmt(base)} | {_fmt(ratio)} |")
    peer_ratios = [("the seed's design", "pipeline_vs_seed_design"),
                   ("Celery + MongoDB backend", "pipeline_vs_celery_mongodb_backend")]  # fmt: skip
    peer_ratios.append(("itself with no monitor (its jobs/s while Flower watches)",
                        "monitored_vs_pipeline"))  # fmt: skip
    found = [(label, r.get("ratios", {}).get(key)) for label, key in peer_ratios]
    if any(value is not None for _, value in found):
        lines += ["", "| jobline's jobs/s against | ratio |", "| --- | ---: |"]
        lines += [f"| {label} | {_fmt(value)} |" for label, value in found]
    lines += floor_rows(r)
    cpu = cpu_rows(r)
    if cpu:
        lines += ["", "| CPU per job, ms | raw Celery | pipeline | Flower watching |",
                  "| --- | ---: | ---: | ---: |"]  # fmt: skip
        lines += [f"| {name} | {_fmt(c)} | {_fmt(p)} | {_fmt(m)} |" for name, c, p, m in cpu]
    lines += ["", "| target | measured | met |", "| --- | ---: | :---: |"]
    for t in r.get("targets", []):
        met = {True: "yes", False: "no", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | {met} |")
    return "\n".join(lines)
