"""Supervision of the embedded event store process (``consumers.store_server``).

``StoreProcess`` starts the child, waits for the line that says where it listens, writes that
URL to ``<data dir>/clickhouse.url`` (for ``apicat query`` and other roles), restarts the
child with capped exponential backoff when it dies (the emitter journals meanwhile), and
stops it on ``aclose``: end of its stdin and SIGTERM, a bounded wait, then SIGKILL.

The child stays in this process's group (CPU accounting, ``kill -- -PGID`` and service
managers see one unit) and stops by itself when its stdin, held by this process, closes —
also when this process is killed. A signal to the whole group gives it a few seconds'
grace while its stdin is open, so the gateway's last events still reach it. Not safe to
share between event loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from consumers.store import StoreError
from consumers.store_server import FAILED_PREFIX, READY_PREFIX

log = logging.getLogger("apicat.store_process")


class StoreProcess:
    """One supervised store process serving ``data_dir``; ``start``, then ``aclose``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        url_file: Path,
        *,
        log_level: str = "INFO",
        log_format: str = "text",
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        restart_initial_s: float = 0.5,
        restart_max_s: float = 30.0,
    ) -> None:
        self._command = [
            sys.executable, "-m", "consumers.store_server", "--data-dir", str(data_dir),
            "--port", str(port), "--log-level", log_level, "--log-format", log_format,
        ]  # fmt: skip
        self._url_file = url_file
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._restart_initial_s = restart_initial_s
        self._restart_max_s = restart_max_s
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.url: str | None = None
        """Where the store listens now; ``None`` while it is down."""
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> str:
        """Start the store process and wait until it listens.

        Returns:
            Its URL.

        Raises:
            StoreError: it could not start (the reason it printed, e.g. chDB is locked).
        """
        url = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="store-process")
        return url

    async def _spawn(self) -> str:
        process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(self._startup_timeout_s):
                line = (await process.stdout.readline()).decode("utf-8", "replace").strip()
        except TimeoutError:
            line = ""
            reason = f"the event store process was not ready within {self._startup_timeout_s:g} s"
        except BaseException:
            await self._stop(process)
            raise
        else:
            reason = (
                line.removeprefix(FAILED_PREFIX)
                if line.startswith(FAILED_PREFIX)
                else "the event store process exited before it was ready (see its log above)"
            )
        if not line.startswith(READY_PREFIX):
            await self._stop(process)
            raise StoreError(reason, retriable=False)
        self._process = process
        self.url = line.removeprefix(READY_PREFIX)
        self._url_file.write_text(self.url + "\n")
        return self.url

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._restart_initial_s
        while True:
            assert self._process is not None
            started = loop.time()
            status: int | str = await _wait(self._process)
            self.url = None
            self._url_file.unlink(missing_ok=True)
            if loop.time() - started > 60:
                delay = self._restart_initial_s  # it had been fine for a while
            while True:
                log.error(
                    "event store process exited with status %s; restarting in %.1f s",
                    status,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._restart_max_s)
                try:
                    await self._spawn()
                except StoreError as exc:
                    status = f"? ({exc.message})"
                    continue
                self.restarts += 1
                log.warning("event store process restarted at %s", self.url)
                break

    async def aclose(self) -> None:
        """Stop supervising, then the store: stdin closed + SIGTERM, bounded wait, SIGKILL."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._process is not None:
            await self._stop(self._process)
        self.url = None
        self._url_file.unlink(missing_ok=True)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_timeout_s):
                    await _wait(process)
            except TimeoutError:
                log.error("event store process did not stop within %g s; killing it",
                          self._stop_timeout_s)  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await _wait(process)


async def _wait(process: asyncio.subprocess.Process) -> int:
    # Read stdout to its end meanwhile: a child that wrote more than a pipe holds would block.
    if process.stdout is not None:
        while await process.stdout.read(65536):
            pass
    status = await process.wait()
    if process.stdin is not None:
        process.stdin.close()
    return status
