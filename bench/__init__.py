"""Benchmarks: `python -m bench` (the whole installation, one table); the scripts beside it
measure the scheduler alone (docs/benchmarks.md)."""
