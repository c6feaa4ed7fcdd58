"""Benchmarks: jobline side by side with the engine it runs on (Celery) and its peers."""
