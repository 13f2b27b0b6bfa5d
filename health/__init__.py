"""Upstream health: probe schedule, targets, Up/Down status, the prober and ``apicat prober``."""
