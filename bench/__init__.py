"""Reproducible performance measurements written to docs/BENCHMARKS.md."""
