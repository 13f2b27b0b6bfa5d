"""The prober: probes every upstream once per interval at its phase, under a per-round lease.

How several prober processes share the work (no coordinator, no assignment):

* Every prober schedules every target at the same deterministic due times
  (:func:`~health.schedule.next_due`: ``slot start + hash phase``), plus a small random
  jitter so no prober wins every race.
* At a due time it takes the lease of that round, ``(target key, slot of the due time)``,
  with ``SET NX PX interval``. Exactly one prober wins and probes; the others skip the round.
* A prober that dies simply stops taking leases: the survivors win the very next round of
  every target it used to win, so takeover happens within one interval with no failure
  detection at all.
* If the store cannot be reached to take a lease, the prober probes anyway and logs it: a
  round probed twice costs one extra request, a round probed by nobody hides an outage.

A failed probe of an upstream still considered Up schedules a confirmation probe after
``confirm_delay_s`` (no lease: only the prober that saw the failure knows of it), so with
``down_after`` = 2 an upstream that dies is marked Down about one interval (plus that delay)
after it died, instead of two intervals.

One ``Prober`` per event loop; ``run`` must not be called twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.events import EventEmitter
from gateway.upstream import UpstreamFetcher, UpstreamResponse
from health.classify import classify
from health.schedule import next_due, slot
from health.status import StatusStore, StatusStoreError, UpstreamStatus, next_status
from health.targets import ProbeTarget
from schemas.events import AttemptOutcome, HealthProbeEvent

log = logging.getLogger("apicat.health")

OnStatus = Callable[[UpstreamStatus, UpstreamStatus | None], None]

# The loop wakes at least this often, so targets() changes (config edits) apply quickly.
_MAX_SLEEP_S = 1.0
# Jitter is a sliver of the interval: it only breaks lease-race ties between probers.
_JITTER_FRACTION = 0.01
_MAX_CONFIRM_DELAY_S = 30.0
_CONFIRM_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class _Round:
    """The next regular probe round of one target."""

    interval_s: float
    due: float
    """The round's phase point; its slot names the lease."""
    fire_at: float
    """``due`` plus this round's jitter."""


class Prober:
    """Schedules, leases, runs and records health probes; see the module docstring."""

    def __init__(
        self,
        targets: Callable[[], Sequence[ProbeTarget]],
        fetcher: UpstreamFetcher,
        store: StatusStore,
        emitter: EventEmitter,
        *,
        holder: str,
        instance: str,
        down_after: int,
        max_concurrency: int = 20,
        on_status: OnStatus | None = None,
        clock: Callable[[], float] = time.time,
        max_jitter_s: float = 1.0,
        confirm_delay_s: float | None = None,
        shutdown_grace_s: float = 2.0,
    ) -> None:
        """Wire a prober; nothing runs until :meth:`run` or :meth:`probe`.

        Args:
            targets: returns the current targets; called every loop cycle (config edits apply
                live), so it should be cheap.
            fetcher: the gateway's upstream client (same timeouts, body cap, classification).
            store: where statuses go and leases are taken.
            emitter: receives one ``health_probe`` event per probe.
            holder: this prober's name in leases (unique per process).
            instance: the ``instance`` field of events.
            down_after: consecutive failed probes that mark an upstream Down.
            max_concurrency: probes in flight at once.
            on_status: called with ``(new, previous)`` after every probe (the gateway's
                health view); exceptions are logged.
            clock: wall clock in seconds (due times and slots are wall-clock based, so every
                process agrees on them).
            max_jitter_s: cap on the random delay added to each round (1% of the interval).
            confirm_delay_s: delay of the confirmation probe after a failure of an Up
                upstream; default 10% of the interval, at most 30 s.
            shutdown_grace_s: how long probes in flight may finish after stop.
        """
        self._targets = targets
        self._fetcher = fetcher
        self._store = store
        self._emitter = emitter
        self._holder = holder
        self._instance = instance
        self._down_after = down_after
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._on_status = on_status
        self._clock = clock
        self._max_jitter_s = max_jitter_s
        self._confirm_delay_s = confirm_delay_s
        self._shutdown_grace_s = shutdown_grace_s
        self._rounds: dict[str, _Round] = {}
        self._confirm_at: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # Last statuses this prober wrote: the previous status when the store is unreachable.
        self._last: dict[str, UpstreamStatus] = {}
        self._current: Sequence[ProbeTarget] = ()
        self._pruned_for: frozenset[str] | None = None
        self._prune_failing = False

    async def probe(self, target: ProbeTarget) -> UpstreamStatus:
        """Probe one target now: fetch, classify, update its status, emit the event.

        Never raises for upstream or store faults (they are logged); cancellation propagates.

        Args:
            target: the upstream to probe.

        Returns:
            The upstream's new status.
        """
        response = await self._fetch(target)
        result, detail = classify(response, target.endpoint_key, target.min_confidence)
        previous = await self._previous(target.base_url)
        status = next_status(
            previous,
            target,
            result,
            response.latency_ms,
            detail,
            self._clock(),
            self._down_after,
        )
        self._last[status.url] = status
        try:
            await self._store.put(status)
        except StatusStoreError as exc:
            log.warning("health status of %s not stored: %s", status.url, exc)
        self._emitter.emit(
            HealthProbeEvent.build(
                instance=self._instance,
                upstream_url=target.base_url,
                category=target.category,
                endpoint=target.endpoint_path,
                source_name=target.source_name,
                status=result,
                status_code=response.status_code,
                latency_ms=response.latency_ms,
                detail=detail,
            )
        )
        if previous is None or previous.up != status.up:
            log.info(
                "upstream %s is %s (%s %s)",
                status.url,
                "Up" if status.up else "Down",
                result.value,
                detail,
            )
        if self._on_status is not None:
            try:
                self._on_status(status, previous)
            except Exception:
                log.exception("on_status callback failed for %s", status.url)
        return status

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every target on its schedule until ``stop`` is set.

        Wakes as soon as ``stop`` is set; probes in flight then get ``shutdown_grace_s`` to
        finish before they are cancelled.

        Args:
            stop: set it to end the loop.
        """
        try:
            while not stop.is_set():
                now = self._clock()
                targets = self._read_targets()
                await self._prune(targets)
                for target, leased in self._due(targets, now):
                    self._start(target, leased)
                delay = min(max(self._next_wake() - self._clock(), 0.0), _MAX_SLEEP_S)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        finally:
            await self._drain()

    async def _prune(self, targets: Sequence[ProbeTarget]) -> None:
        """Forget the statuses of upstreams no longer probed, once per change of the list.

        Otherwise an upstream removed from the config stayed in ``/health/upstreams`` (and in
        Redis) for good. Runs at start-up too, for removals made while no prober ran; with
        probers of two config versions side by side, one may drop the other's status, which
        its next probe writes again.
        """
        urls = frozenset(target.base_url for target in targets)
        if urls == self._pruned_for:
            return
        try:
            stale = set(await self._store.get_all()) - urls
            await self._store.forget(stale)
        except StatusStoreError as exc:
            if not self._prune_failing:  # once per outage, not once per loop cycle
                log.warning("cannot forget statuses of removed upstreams (%s); will retry", exc)
            self._prune_failing = True
            return
        self._prune_failing = False
        if stale:
            log.info("forgot the status of %d upstream(s) no longer probed", len(stale))
        self._pruned_for = urls

    def _read_targets(self) -> Sequence[ProbeTarget]:
        try:
            self._current = self._targets()
        except Exception:
            # Keep probing the last good list rather than stopping all health checks.
            log.exception("reading probe targets failed; keeping the previous list")
        return self._current

    def _due(
        self, targets: Sequence[ProbeTarget], now: float
    ) -> list[tuple[ProbeTarget, tuple[int, float] | None]]:
        """Targets to probe now, each with its lease ``(slot, ttl)`` or ``None`` (confirm)."""
        ready: list[tuple[ProbeTarget, tuple[int, float] | None]] = []
        keys = set()
        for target in targets:
            key = target.key
            keys.add(key)
            interval_s = target.interval_s
            current = self._rounds.get(key)
            # New target, changed interval, or the clock stepped back: restart its rhythm.
            if (
                current is None
                or current.interval_s != interval_s
                or current.due - now > interval_s
            ):
                current = self._round(key, interval_s, next_due(key, interval_s, now))
                self._rounds[key] = current
            confirm_at = self._confirm_at.get(key)
            if confirm_at is not None and confirm_at <= now:
                del self._confirm_at[key]
                ready.append((target, None))
            if current.fire_at <= now:
                ready.append((target, (slot(current.due, interval_s), interval_s)))
                # Missed rounds (a stalled loop) are skipped, not caught up in a burst.
                following = next_due(key, interval_s, max(now, current.due + interval_s / 2))
                self._rounds[key] = self._round(key, interval_s, following)
        for gone in self._rounds.keys() - keys:
            del self._rounds[gone]
            self._confirm_at.pop(gone, None)
        return ready

    def _round(self, key: str, interval_s: float, due: float) -> _Round:
        jitter_s = random.uniform(0.0, min(self._max_jitter_s, interval_s * _JITTER_FRACTION))
        return _Round(interval_s, due, due + jitter_s)

    def _next_wake(self) -> float:
        wake = self._clock() + _MAX_SLEEP_S
        if self._rounds:
            wake = min(wake, min(r.fire_at for r in self._rounds.values()))
        if self._confirm_at:
            wake = min(wake, min(self._confirm_at.values()))
        return wake

    def _start(self, target: ProbeTarget, lease: tuple[int, float] | None) -> None:
        key = target.key
        if key in self._in_flight:
            # A probe slower than the interval (or a confirmation) is still running: skip.
            log.debug("probe of %s still running; round skipped", key)
            return
        task = asyncio.create_task(self._run_round(target, lease), name=f"probe {key}")
        self._in_flight[key] = task
        task.add_done_callback(lambda _: self._in_flight.pop(key, None))

    async def _run_round(self, target: ProbeTarget, lease: tuple[int, float] | None) -> None:
        try:
            if lease is not None and not await self._take_lease(target, *lease):
                return
            async with self._semaphore:
                status = await self.probe(target)
            if status.up and status.consecutive_failures > 0:
                self._confirm_at[target.key] = self._clock() + self._confirm_delay(target)
        except Exception:
            # A bug in one probe must not end health checking for every upstream.
            log.exception("probe round of %s failed", target.key)

    async def _take_lease(self, target: ProbeTarget, round_slot: int, ttl_s: float) -> bool:
        try:
            return await self._store.try_lease(target.key, round_slot, self._holder, ttl_s)
        except StatusStoreError as exc:
            log.warning("no lease for %s (%s); probing anyway", target.key, exc)
            return True

    def _confirm_delay(self, target: ProbeTarget) -> float:
        if self._confirm_delay_s is not None:
            return self._confirm_delay_s
        return min(target.interval_s * _CONFIRM_FRACTION, _MAX_CONFIRM_DELAY_S)

    async def _fetch(self, target: ProbeTarget) -> UpstreamResponse:
        started = time.perf_counter()
        try:
            return await self._fetcher.get(target.url, target.headers, target.timeout_s)
        except Exception as exc:
            # The fetcher turns upstream faults into outcomes; anything else is a client bug,
            # reported as an Error probe instead of killing the round silently.
            log.exception("fetcher raised while probing %s", target.url)
            latency_ms = (time.perf_counter() - started) * 1000
            detail = f"{type(exc).__name__}: {exc}"[:200]
            return UpstreamResponse(AttemptOutcome.HTTP_OTHER, None, None, 0, latency_ms, detail)

    async def _previous(self, url: str) -> UpstreamStatus | None:
        # The store is authoritative: another prober may have probed this URL last.
        try:
            return await self._store.get(url)
        except StatusStoreError as exc:
            log.warning("reading the status of %s failed (%s); using the local copy", url, exc)
            return self._last.get(url)

    async def _drain(self) -> None:
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._shutdown_grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
