"""`python -m bench.plot`: docs/bench.png from bench/results/latest.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
CHART = ROOT / "docs" / "bench.png"


def throughput(r: dict[str, Any]) -> tuple[list[str], list[float]]:
    """Processed per second: each engine's no-op tasks, then jobline end to end."""
    labels, values = [], []
    for engine in ("celery", "dramatiq", "rq"):
        figure = r.get("engine", {}).get(engine, {}).get("processed_per_s")
        if figure is not None:
            labels.append(f"raw {engine}" if engine == "celery" else engine)
            values.append(figure)
    for peer, label in (("seed", "seed's design"),
                        ("celery_mongodb", "Celery + MongoDB backend")):  # fmt: skip
        figure = r.get("peers", {}).get(peer, {}).get("jobs_per_s")
        if figure is not None:
            labels.append(label)
            values.append(figure)
    if "pipeline" in r:
        labels.append("jobline")
        values.append(r["pipeline"]["jobs_per_s"])
    if "monitored" in r:
        labels.append("jobline, Flower watching")
        values.append(r["monitored"]["jobs_per_s"])
    return labels, values


def latencies(r: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Latency percentiles (ms) of each measured path."""
    out: dict[str, dict[str, float]] = {}
    if "submit" in r:
        out[f"submit at {r['submit']['target_per_s']:.0f}/s"] = r["submit"]
    if "submit_alone" in r:
        out["submit, no worker"] = r["submit_alone"]
    if "e2e" in r:
        out["end to end, idle"] = r["e2e"]
    for key, label in (("get_one", "GET job"), ("list_first", "list, first page"),
                       ("list_all", "list all, first page"),
                       ("list_deep", "list, deep page")):  # fmt: skip
        if key in r.get("read", {}):
            out[label] = r["read"][key]
    return out


def cpu_split(r: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """CPU ms per job by process: (raw Celery, jobline); the load generator left out."""
    celery = r.get("engine", {}).get("celery", {}).get("cpu_ms_per_task", {})
    pipeline = r.get("pipeline", {}).get("cpu_ms_per_job", {})
    names = [n for n in [*pipeline, *celery] if n not in ("total", "load generator")]
    return {n: (celery.get(n, 0.0), pipeline.get(n, 0.0)) for n in dict.fromkeys(names)}


def draw(r: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    split = cpu_split(r)
    fig, axes = plt.subplots(1, 3 if split else 2, figsize=(17 if split else 12, 4.8))
    left, right = axes[0], axes[1]
    labels, values = throughput(r)
    colours = ["#4c72b0" if not label.startswith("jobline") else "#dd8452" for label in labels]
    bars = left.bar(labels, values, color=colours)
    left.bar_label(bars, fmt="%.0f")
    left.set_ylim(top=max(values, default=1) * 1.1)  # room for the tallest bar's label
    # Six bars side by side: slanted, so that long names do not run into each other.
    left.set_xticks(range(len(labels)), labels, rotation=25, ha="right")
    left.set_ylabel("no-op jobs processed per second")
    left.set_title("Throughput: jobline beside its engine and peers")

    paths = latencies(r)
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        xs = [n + (i - 1) * width for n in range(len(paths))]
        ys = [figures.get(f"{q}_ms", 0) for figures in paths.values()]
        right.bar(xs, ys, width, label=q)
    right.set_xticks(range(len(paths)), list(paths), rotation=20, ha="right")
    right.set_yscale("log")
    right.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    right.yaxis.set_major_formatter(ScalarFormatter())
    right.yaxis.set_minor_formatter(NullFormatter())
    right.set_ylabel("milliseconds (log scale)")
    right.set_title("Latency percentiles")
    right.legend()

    if split:
        cpu = axes[2]
        bottoms = [0.0, 0.0]
        for name, (celery, jobline) in split.items():
            cpu.bar(["raw celery", "jobline"], [celery, jobline], bottom=bottoms, label=name)
            bottoms = [bottoms[0] + celery, bottoms[1] + jobline]
        for x, total in enumerate(bottoms):
            cpu.annotate(f"{total:.1f}", (x, total), ha="center", va="bottom")
        cpu.set_ylim(top=max(bottoms) * 1.1)
        cpu.set_ylabel("CPU milliseconds per job, all processes")
        cpu.set_title("Where the cores go")
        cpu.legend(fontsize="small")
    fig.suptitle(
        f"jobline benchmarks: {r['mode']} run, {r['cores']} cores, worker concurrency "
        f"{r['concurrency']}, load average {r['load_average'][0]:.1f} at start"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=CHART)
    args = parser.parse_args(argv)
    draw(json.loads(args.results.read_text()), args.out)
    print(f"chart written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
