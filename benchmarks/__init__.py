"""Benchmarks: run with `make bench` or the commands recorded in BENCHMARKS.md."""
