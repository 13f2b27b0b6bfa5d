"""Entry point of ``python -m health``: the prober command."""

from __future__ import annotations

from health.cli import prober

if __name__ == "__main__":
    prober(prog_name="python -m health")
