"""Upstream health prober (health issue)."""
