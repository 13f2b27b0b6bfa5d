"""Run the demo upstreams in a subprocess on loopback and drive their control API."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "demo upstreams listening on "


class DemoUpstreamsError(RuntimeError):
    """The demo upstreams did not start, or a control call was refused."""


class DemoUpstreams:
    """A ``python -m demo --port 0`` subprocess and a sync control client for it.

    Start with :meth:`start`; always :meth:`close` (or use ``with``). Control calls are
    blocking httpx calls, so use them from test code, not from inside a running event loop's
    hot path. Not thread-safe.
    """

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes], base_url: str) -> None:
        self._process = process
        self._stderr = stderr
        self.base_url = base_url
        self._client = httpx.Client(base_url=base_url, timeout=10.0, trust_env=False)

    @classmethod
    def start(
        cls,
        sources: Mapping[str, Mapping[str, object]] | None = None,
        *,
        with_defaults: bool = True,
        startup_timeout_s: float = 30.0,
    ) -> DemoUpstreams:
        """Start the server and wait until it prints that it is listening.

        Args:
            sources: source name → knob fields, merged over the defaults (``--knobs``).
            with_defaults: also serve :data:`demo.catalog.DEFAULT_SOURCES`.
            startup_timeout_s: how long to wait for the "listening on" line.

        Returns:
            The running servers.

        Raises:
            DemoUpstreamsError: when the process exits or stays silent; carries its stderr.
        """
        command = [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", "0"]
        if not with_defaults:
            command.append("--no-defaults")
        knobs_file: Path | None = None
        if sources is not None:
            handle, name = tempfile.mkstemp(prefix="demo-knobs-", suffix=".json")
            with os.fdopen(handle, "w") as file:
                json.dump(dict(sources), file)
            knobs_file = Path(name)
            command += ["--knobs", str(knobs_file)]
        # Lives as long as the server (stderr of a crash is read from it); closed in close().
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
        try:
            base_url = _wait_for_ready(process, stderr, startup_timeout_s)
        except BaseException:
            _stop(process)
            stderr.close()
            raise
        finally:
            if knobs_file is not None:
                knobs_file.unlink(missing_ok=True)
        return cls(process, stderr, base_url)

    def source_url(self, name: str) -> str:
        """Base URL of one source, as a gateway config's ``base_url``: ``<base>/<name>/v1``."""
        return f"{self.base_url}/{name}/v1"

    def set_knobs(self, source: str, **fields: object) -> dict[str, Any]:
        """Merge ``fields`` over a source's knobs; an unknown name adds a clean source.

        Returns:
            The source's knobs now in force.
        """
        return self._call("PUT", f"/_demo/knobs/{source}", json=fields)  # type: ignore[no-any-return]

    def knobs(self) -> dict[str, Any]:
        """Every source's knobs now in force."""
        return self._call("GET", "/_demo/knobs")  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Back to the startup sources and knobs, every counter zeroed."""
        self._call("POST", "/_demo/reset")

    def stats(self) -> dict[str, Any]:
        """``{"total", "not_found", "sources": {name: {"total", "paths": {rest: n}}}}``."""
        return self._call("GET", "/_demo/stats")  # type: ignore[no-any-return]

    def calls(self, source: str, rest: str | None = None) -> int:
        """Requests ``source`` received since the last reset, all or under one rest path."""
        counts = self.stats()["sources"].get(source, {"total": 0, "paths": {}})
        return int(counts["total"] if rest is None else counts["paths"].get(rest, 0))

    def close(self) -> int | None:
        """Stop the process (terminate, bounded wait, kill) and release every handle.

        Returns:
            The process's exit code (0 after a clean shutdown on SIGTERM).
        """
        self._client.close()
        _stop(self._process)
        self._stderr.close()
        return self._process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, json: object = None) -> Any:
        response = self._client.request(method, path, json=json)
        if response.status_code != 200:
            raise DemoUpstreamsError(f"{method} {path} → {response.status_code}: {response.text}")
        return response.json()


def _wait_for_ready(process: subprocess.Popen[bytes], stderr: IO[bytes], timeout_s: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0 and process.poll() is None:
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            continue
        # The server writes the whole line at once and flushes, so this never blocks long.
        line = process.stdout.readline().decode("utf-8", "replace").strip()
        if line.startswith(READY_PREFIX):
            return line.removeprefix(READY_PREFIX)
        if not line:  # EOF: the process is exiting; give it a moment to report why
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
    state = "did not start" if process.poll() is None else f"exited with {process.returncode}"
    stderr.seek(0)
    output = stderr.read().decode("utf-8", "replace").strip() or "<no stderr>"
    raise DemoUpstreamsError(
        f"demo upstreams {state} before listening (waited up to {timeout_s:g}s); stderr:\n{output}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()
