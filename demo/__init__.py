"""Deterministic fake upstream APIs with failure knobs, for demos, tests and benchmarks."""
