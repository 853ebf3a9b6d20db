"""Benchmark harness (not installed): run ``python -m bench.kernels`` from the repository root."""
