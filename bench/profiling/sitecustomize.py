"""Imported by every Python process started with this directory on PYTHONPATH (bench/profile.py)."""

import os

if os.environ.get("BENCH_PROFILE_DIR"):
    from bench.sampler import start

    start(os.environ["BENCH_PROFILE_DIR"])
