"""The selection engine: run every ranked chain concurrently and return the winning answer.

Each chain walks its links in order (primary, then fallbacks). A link is skipped while its
circuit is open; otherwise it is called, retried only on 5xx/connection errors with jittered
backoff, and its answer is parsed and validated. The engine stops as soon as the ranking
decision says no better-ranked chain can still win, and cancels the chains that lost; their
in-flight calls are still recorded (outcome ``cancelled``). Every call is one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import orjson
import stamina

from gateway.breaker import BreakerRegistry
from gateway.events import EventEmitter
from gateway.health_view import HealthView
from gateway.ranking import ChainStatus, decide
from gateway.routing import ChainPlan, EndpointRoute, LinkPlan, upstream_url
from gateway.upstream import CallProgress, UpstreamFetcher, UpstreamResponse
from schemas.events import (
    AttemptOutcome,
    FieldFailure,
    SourceRole,
    UpstreamAttemptEvent,
    ValidationFailureEvent,
)
from schemas.validation import validate_payload

_BREAKER_FAILURES = frozenset(
    {AttemptOutcome.TIMEOUT, AttemptOutcome.CONNECTION_ERROR, AttemptOutcome.HTTP_5XX}
)
_DEADLINE = "deadline"
_DEADLINE_GRACE_S = 0.05
# Starting a call with less time than this left cannot produce an answer in time.
_MIN_CALL_S = 0.001


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    trace_id: str
    instance: str


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One link's try, as summarised to clients in a 503 and to logs."""

    source_name: str
    role: str
    depth: int
    url: str
    outcome: AttemptOutcome
    status_code: int | None
    latency_ms: float
    detail: str

    def public(self, *, expose_url: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "source": self.source_name,
            "role": self.role,
            "depth": self.depth,
            "outcome": self.outcome.value,
            "status_code": self.status_code,
            "latency_ms": round(self.latency_ms, 1),
            "detail": self.detail,
        }
        if expose_url:
            body["url"] = self.url
        return body


def summarize_attempts(attempts: Sequence[AttemptRecord]) -> str:
    """One line for a 503's message: each link's outcomes, retries counted, in order tried.

    ``drakorid: http_5xx x2; drakorid (fallback 1): timeout; drakorindo: http_5xx x2``; a
    fallback URL carries its primary's source name, so the depth tells the links apart.
    """
    counts: dict[tuple[str, int, str], int] = {}
    for attempt in attempts:
        key = (attempt.source_name, attempt.depth, attempt.outcome.value)
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(
        f"{source}{f' (fallback {depth})' if depth else ''}: {outcome}"
        + (f" x{count}" if count > 1 else "")
        for (source, depth, outcome), count in counts.items()
    )


@dataclass(frozen=True, slots=True)
class Winner:
    link: LinkPlan
    body: bytes


@dataclass(frozen=True, slots=True)
class SelectionResult:
    winner: Winner | None
    attempts: tuple[AttemptRecord, ...]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    initial_wait_s: float
    max_wait_s: float


class _LinkFields(TypedDict):
    """Fields shared by every event about one link of one request."""

    request_id: str
    trace_id: str
    instance: str
    category: str
    endpoint: str
    source_name: str
    role: SourceRole
    depth: int
    url: str


class _RetriableFailure(Exception):
    def __init__(self, response: UpstreamResponse) -> None:
        super().__init__(response.outcome.value)
        self.response = response


class SelectionEngine:
    """Runs the chains of each request; one engine serves every request of one event loop.

    Its attributes are the parts each request's run uses (read-only after construction).
    """

    def __init__(
        self,
        fetcher: UpstreamFetcher,
        breakers: BreakerRegistry,
        emitter: EventEmitter,
        retry: RetryPolicy,
        clock: Callable[[], float] = time.monotonic,
        health: HealthView | None = None,
    ) -> None:
        self.health = health
        self.fetcher = fetcher
        self.breakers = breakers
        self.emitter = emitter
        self.retry = retry
        self.clock = clock

    async def select(
        self,
        route: EndpointRoute,
        rest: str,
        params: Sequence[tuple[str, str]],
        ctx: RequestContext,
        deadline_s: float,
    ) -> SelectionResult:
        """Return the best-ranked valid answer, or none with every attempt that was made.

        Args:
            route: the category's endpoint with its ranked chains.
            rest: the concrete path after ``/api/v1/``.
            params: query parameters to forward.
            ctx: ids stamped on every event.
            deadline_s: seconds the whole selection may take.
        """
        deadline = self.clock() + deadline_s
        attempts: list[AttemptRecord] = []
        run = _ChainRun(self, route, rest, params, ctx, deadline, attempts)
        winner: Winner | None = None
        if len(route.chains) == 1:
            # Nothing to race: the chain runs in this task, without a task and a wait per
            # request (a tenth of a cache miss's CPU).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - self.clock()) + _DEADLINE_GRACE_S):
                    winner = await run.chain(route.chains[0])
            return SelectionResult(winner, tuple(attempts))
        tasks = [asyncio.create_task(run.chain(chain)) for chain in route.chains]
        index_of = {task: index for index, task in enumerate(tasks)}
        statuses = [ChainStatus.RUNNING] * len(tasks)
        winners: list[Winner | None] = [None] * len(tasks)
        pending: set[asyncio.Task[Winner | None]] = set(tasks)
        timed_out = False
        try:
            # Calls are already clipped to the deadline; this net also covers retry backoff.
            async with asyncio.timeout(max(0.0, deadline - self.clock()) + _DEADLINE_GRACE_S):
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        result = task.result()
                        statuses[index_of[task]] = (
                            ChainStatus.SUCCEEDED if result else ChainStatus.EXHAUSTED
                        )
                        winners[index_of[task]] = result
                    decision = decide(statuses)
                    if decision.done:
                        winner = None if decision.winner is None else winners[decision.winner]
                        break
        except TimeoutError:
            timed_out = True
        finally:
            for task in pending:
                task.cancel(_DEADLINE if timed_out else None)
            if pending:
                # Let losing chains record their cancelled calls before the answer goes out.
                await asyncio.gather(*pending, return_exceptions=True)
        return SelectionResult(winner, tuple(attempts))


class _ChainRun:
    """The per-request state shared by the chains of one selection."""

    def __init__(
        self,
        engine: SelectionEngine,
        route: EndpointRoute,
        rest: str,
        params: Sequence[tuple[str, str]],
        ctx: RequestContext,
        deadline: float,
        attempts: list[AttemptRecord],
    ) -> None:
        self.engine = engine
        self.route = route
        self.rest = rest
        self.params = params
        self.ctx = ctx
        self.deadline = deadline
        self.attempts = attempts

    async def chain(self, chain: ChainPlan) -> Winner | None:
        health = self.engine.health
        for link in health.order(chain.links) if health else chain.links:
            if self.deadline - self.engine.clock() <= _MIN_CALL_S:
                return None
            url = upstream_url(link.base_url, self.rest, self.params)
            if not self.engine.breakers.allow(link.base_url, self.engine.clock()):
                self._record(link, url, 0, UpstreamResponse(
                    AttemptOutcome.CIRCUIT_OPEN, None, None, 0, 0.0, "circuit open; link skipped"
                ))  # fmt: skip
                continue
            body = await self._link(link, url)
            if body is not None:
                return Winner(link, body)
        return None

    async def _link(self, link: LinkPlan, url: str) -> bytes | None:
        response = await self._call(link, url, 0)
        if not self._should_retry(link, response):
            return self._accept(link, url, response, 0)
        # Only a retriable failure pays for the retry machinery. Its first iteration replays
        # the failure already in hand, so stamina's backoff runs before the actual retry.
        engine = self.engine
        policy = engine.retry
        try:
            for retry in stamina.retry_context(
                on=_RetriableFailure,
                attempts=policy.attempts,
                timeout=max(self.deadline - engine.clock(), 0.001),
                wait_initial=policy.initial_wait_s,
                wait_max=policy.max_wait_s,
                wait_jitter=policy.initial_wait_s,
            ):
                with retry:
                    if retry.num > 1:
                        response = await self._call(link, url, retry.num - 1)
                    if self._should_retry(link, response):
                        raise _RetriableFailure(response)
                    return self._accept(link, url, response, retry.num - 1)
        except _RetriableFailure:
            pass
        return None

    def _should_retry(self, link: LinkPlan, response: UpstreamResponse) -> bool:
        # Retrying a link whose circuit just opened would hammer it; move on instead.
        return (
            response.retriable
            and self.engine.retry.attempts > 1
            and self.engine.breakers.is_closed(link.base_url)
        )

    async def _call(self, link: LinkPlan, url: str, retry: int) -> UpstreamResponse:
        engine = self.engine
        remaining_s = self.deadline - engine.clock()
        if remaining_s <= _MIN_CALL_S:
            response = UpstreamResponse(
                AttemptOutcome.DEADLINE_EXCEEDED, None, None, 0, 0.0, "request deadline reached"
            )
            self._record(link, url, retry, response)
            return response
        clipped = remaining_s < link.timeout_s
        started = time.perf_counter()
        progress = CallProgress()
        try:
            response = await engine.fetcher.get(
                url, link.headers, min(link.timeout_s, remaining_s), progress
            )
            if clipped and response.outcome is AttemptOutcome.TIMEOUT:
                response = _with(
                    response, AttemptOutcome.DEADLINE_EXCEEDED, "request deadline reached"
                )
        except asyncio.CancelledError as cancel:
            engine.breakers.record_abandoned(link.base_url)
            # The deadline: the selection cancelled a racing chain's task with that reason, or
            # (one chain, run in the selection's own task) the timeout fired past the deadline.
            reason = cancel.args[0] if cancel.args else None
            deadline_hit = reason == _DEADLINE or engine.clock() >= self.deadline
            outcome = AttemptOutcome.DEADLINE_EXCEEDED if deadline_hit else AttemptOutcome.CANCELLED
            elapsed = (time.perf_counter() - started) * 1000
            detail = "request deadline reached" if deadline_hit else "a better chain won"
            if progress.sent:  # a call that never left the gateway is not an attempt
                self._record(
                    link, url, retry, UpstreamResponse(outcome, None, None, 0, elapsed, detail)
                )
            raise
        if response.outcome in _BREAKER_FAILURES:
            engine.breakers.record_failure(link.base_url, engine.clock())
        else:
            engine.breakers.record_success(link.base_url)
        if response.outcome is not AttemptOutcome.OK:
            self._record(link, url, retry, response)
        return response

    def _accept(
        self,
        link: LinkPlan,
        url: str,
        response: UpstreamResponse,
        retry: int,
    ) -> bytes | None:
        """Parse and validate a 2xx body; record the attempt with its final outcome."""
        if response.outcome is not AttemptOutcome.OK or response.body is None:
            return None
        try:
            payload = orjson.loads(response.body)
        except orjson.JSONDecodeError as exc:
            self._record(link, url, retry, _with(response, AttemptOutcome.INVALID_JSON, str(exc)))
            return None
        result = validate_payload(self.route.spec.key, payload, self.route.config.min_confidence)
        if not result.ok:
            outcome = (
                AttemptOutcome.LOW_CONFIDENCE
                if result.low_confidence
                else AttemptOutcome.INVALID_SCHEMA
            )
            first = result.issues[0]
            detail = f"{first.path}: {first.rule}" + (
                f" (+{len(result.issues) - 1} more)" if len(result.issues) > 1 else ""
            )
            self._record(link, url, retry, _with(response, outcome, detail), result.confidence)
            self.engine.emitter.emit(
                ValidationFailureEvent(
                    **self._link_fields(link, url),
                    failures=[
                        FieldFailure(path=i.path, rule=i.rule, detail=i.detail)
                        for i in result.issues
                    ],
                )
            )
            return None
        self._record(link, url, retry, response, result.confidence)
        return response.body

    def _link_fields(self, link: LinkPlan, url: str) -> _LinkFields:
        return _LinkFields(
            request_id=self.ctx.request_id,
            trace_id=self.ctx.trace_id,
            instance=self.ctx.instance,
            category=self.route.category,
            endpoint=self.route.spec.path,
            source_name=link.source_name,
            role=link.role,
            depth=link.depth,
            url=url,
        )

    def _record(
        self,
        link: LinkPlan,
        url: str,
        retry: int,
        response: UpstreamResponse,
        confidence: float | None = None,
    ) -> None:
        self.attempts.append(
            AttemptRecord(
                link.source_name,
                link.role.value,
                link.depth,
                url,
                response.outcome,
                response.status_code,
                response.latency_ms,
                response.detail,
            )
        )
        self.engine.emitter.emit(
            UpstreamAttemptEvent.build(
                **self._link_fields(link, url),
                retry=retry,
                status_code=response.status_code,
                latency_ms=response.latency_ms,
                outcome=response.outcome,
                confidence=confidence,
                bytes=response.bytes_read,
                detail=response.detail,
            )
        )


def _with(response: UpstreamResponse, outcome: AttemptOutcome, detail: str) -> UpstreamResponse:
    return UpstreamResponse(
        outcome, response.status_code, None, response.bytes_read, response.latency_ms, detail[:300]
    )
