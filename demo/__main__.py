"""Entry point of ``python -m demo``: the demo-upstreams command."""

from __future__ import annotations

from demo.cli import demo_upstreams

if __name__ == "__main__":
    demo_upstreams(prog_name="python -m demo")
