"""The activator: the local stack's front door, driven by the control plane.

`Activator` ties the parts together and is the only object the stack needs:

    control plane ─ set_routes(HostRoute...) ─────────► route table (swapped whole)
                  ─ set_revision(RevisionEndpoints) ─► prober (listed pods) + throttler
                  ─ remove_revision(key) ────────────► both forget it; parked ones 503
                  ─ reprobe(key, pod) ───────────────► pod out until its probe passes
    prober ── a pod's probe passed ──► throttler gets the new healthy set
    clients ──► ProxyServer ──► ActivatorHandler ──► pods' queue-proxies
    reporter ── every 1 s, and the cold-start poke ──► StatSink (the autoscaler)
    Prometheus ── scrape ──► ActivatorMetrics ── revision_metrics() ──► counts, gauges

The healthy pods of a revision are the listed pods whose probe passed (prober.py); the
throttler routes only to those. A pod left out of a new `RevisionEndpoints` takes no new
request from the moment `set_revision` returns; its requests in flight finish. A pod
passed to `reprobe` (the proxy could not connect to it, or Kubernetes stopped calling it
Ready) takes none until its probe passes again. The mode in `RevisionEndpoints`
(PROXY/SERVE, from the autoscaler's excess burst capacity) is applied in the same step,
and flipping it fails no request: parked requests stay parked until a pod is free in
PROXY and are sent on at once in SERVE (throttler.py).

Call `set_revision` for a revision before a route points at it: a route to an unknown
revision answers 404. Every method here is synchronous and safe to call before `start`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.registry import CollectorRegistry

from dataplane import (
    REPORTING_PERIOD_S,
    Clock,
    PodAddress,
    RevisionEndpoints,
    RevisionKey,
    StatSink,
)
from dataplane.proxy import ProxyConfig, ProxyServer, ProxyStats

from .handler import ActivatorHandler, RevisionState
from .metrics import ActivatorMetrics, RevisionMetrics, RevisionNamesFn, StatsConnection
from .prober import PROBE_PERIOD_S, PROBE_TIMEOUT_S, PodProber, ProbeFn
from .reporter import ConcurrencyReporter
from .routes import HostRoute, RouteTable
from .throttler import DEFAULT_QUEUE_DEPTH, Throttler, ThrottlerStats

__all__ = ["Activator", "ActivatorConfig", "ActivatorStats"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActivatorConfig:
    """Activator settings; durations in seconds. Defaults are Knative's."""

    pod_name: str = "activator"  # the Stat pod name the autoscaler sees
    queue_depth: int = DEFAULT_QUEUE_DEPTH  # parked requests per revision before 503
    probe_period_s: float = PROBE_PERIOD_S
    probe_timeout_s: float = PROBE_TIMEOUT_S
    report_period_s: float = REPORTING_PERIOD_S
    shutdown_timeout_s: float = 30.0  # aclose() waits this long for requests in flight
    seed: int | None = None  # random source for splits and power of two choices (tests)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    def __post_init__(self) -> None:
        problems = [
            f"{name}: {getattr(self, name)!r} must be > 0"
            for name in ("probe_period_s", "probe_timeout_s", "report_period_s")
            if not getattr(self, name) > 0
        ]
        if self.queue_depth < 0:
            problems.append(f"queue_depth: {self.queue_depth!r} must be >= 0")
        if self.shutdown_timeout_s < 0:
            problems.append(f"shutdown_timeout_s: {self.shutdown_timeout_s!r} must be >= 0")
        if problems:
            raise ValueError("activator config: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class ActivatorStats:
    """A snapshot of the activator for tests and debugging."""

    hosts: tuple[str, ...]
    revisions: dict[RevisionKey, ThrottlerStats]
    pokes: int  # cold-start pokes sent
    probes: int  # pod probes sent
    draining: bool
    proxy: ProxyStats | None  # None before start()


class Activator:
    """Ingress + activator: routes, throttles, probes pods and reports load (an EndpointsSink)."""

    def __init__(
        self,
        clock: Clock,
        stat_sink: StatSink,
        *,
        config: ActivatorConfig | None = None,
        probe: ProbeFn | None = None,
    ) -> None:
        self.config = config = config or ActivatorConfig()
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._reporter = ConcurrencyReporter(
            stat_sink, clock, pod_name=config.pod_name, period_s=config.report_period_s
        )
        self._prober = PodProber(
            clock, self._on_healthy, probe=probe,
            period_s=config.probe_period_s, timeout_s=config.probe_timeout_s,
        )
        self._handler = ActivatorHandler(
            self._reporter, on_connect_error=self._on_connect_error, rng=self._rng
        )
        self._server = ProxyServer(self._handler, config.proxy, clock)
        self._started = False
        self._runner: asyncio.Task[None] | None = None
        self._healthy_waiters: list[tuple[RevisionKey, int, asyncio.Future[None]]] = []

    # -- EndpointsSink and routes ----------------------------------------------------------
    def set_revision(self, endpoints: RevisionEndpoints) -> None:
        """Create or update a revision: its listed pods, mode, concurrency and timeouts."""
        revisions = self._handler.revisions
        state = revisions.get(endpoints.key)
        if state is None:
            throttler = Throttler(
                endpoints.key, self._clock, queue_depth=self.config.queue_depth, rng=self._rng
            )
            state = revisions[endpoints.key] = RevisionState(
                endpoints, throttler, self._handler.retry
            )
        else:
            state.set_endpoints(endpoints)
        healthy = self._prober.set_pods(endpoints.key, endpoints.pods)
        self._apply(state, healthy)

    def remove_revision(self, key: RevisionKey) -> None:
        """Forget a revision: parked requests get 503, requests in flight finish."""
        state = self._handler.revisions.pop(key, None)
        self._prober.remove(key)
        if state is not None:
            state.throttler.close()
        self._notify()

    def reprobe(self, key: RevisionKey, pod: PodAddress) -> None:
        """Take a healthy pod out of rotation until its probe passes again (else a no-op)."""
        state = self._handler.revisions.get(key)
        if state is not None:
            self._apply(state, self._prober.reprobe(key, pod))

    def set_routes(self, routes: Iterable[HostRoute]) -> None:
        """Replace the whole route table at once (raises ValueError, keeping the old one)."""
        self._handler.routes = RouteTable(routes)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(
        self, host: str = "127.0.0.1", port: int = 8080, *, sock: socket.socket | None = None
    ) -> None:
        """Listen on host:port (or on `sock`, bound by the caller) and start probing/reporting."""
        if self._started:
            raise RuntimeError("activator already started")
        await self._server.start(host, port, sock=sock)
        self._started = True
        self._runner = asyncio.create_task(self._run(), name="activator")
        self._runner.add_done_callback(self._runner_done)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._prober.run(), name="activator-prober")
            tg.create_task(self._reporter.run(), name="activator-reporter")

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("activator background tasks failed", exc_info=task.exception())

    @property
    def port(self) -> int:
        """The port the ingress listens on (after start)."""
        return self._server.port

    def drain(self) -> None:
        """Answer health probes with 500 from now on (the first step of a shutdown)."""
        self._handler.draining = True

    async def aclose(self) -> None:
        """Drain, stop accepting, let requests in flight finish (bounded), stop the tasks."""
        self.drain()
        if not self._started:
            return
        try:
            cut = await self._server.shutdown(self.config.shutdown_timeout_s)
            if cut:
                _log.warning("activator shutdown cut %d connection(s)", cut)
        finally:
            runner, self._runner = self._runner, None
            if runner is not None:
                runner.cancel()
                try:
                    await runner
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise  # our own caller is cancelling us: never swallow that

    def stats(self) -> ActivatorStats:
        """Hosts routed, per-revision throttler state, counters, and the proxy engine."""
        revisions = {key: s.throttler.stats() for key, s in self._handler.revisions.items()}
        return ActivatorStats(
            hosts=tuple(self._handler.routes.hosts()),
            revisions=revisions,
            pokes=self._reporter.pokes,
            probes=self._prober.probes,
            draining=self._handler.draining,
            proxy=self._server.stats() if self._server.pool is not None else None,
        )

    def revision_stats(self, key: RevisionKey) -> ThrottlerStats | None:
        """One revision's throttler snapshot (its mode, pods, load), None if unknown."""
        state = self._handler.revisions.get(key)
        return None if state is None else state.throttler.stats()

    def revision_metrics(self) -> list[RevisionMetrics]:
        """Each known revision's figures for Prometheus (read at scrape time, not per request)."""
        out = []
        for key, state in self._handler.revisions.items():
            throttled = state.throttler.stats()
            out.append(RevisionMetrics(
                key, self._reporter.concurrency(key), throttled.waiting, throttled.in_flight,
                state.requests.snapshot()))
        return out

    def metrics_collector(
        self,
        registry: CollectorRegistry,
        *,
        names: RevisionNamesFn | None = None,
        connection: StatsConnection | None = None,
    ) -> ActivatorMetrics:
        """Register this activator's Knative metrics in `registry` and return the collector.

        `names` gives a revision's Service and Configuration names for the labels
        (`unknown` without it); `connection` adds the stats-connection gauge and counter.
        """
        return ActivatorMetrics(self, registry, pod_name=self.config.pod_name, names=names,
                                connection=connection)

    def healthy_pods(self, key: RevisionKey) -> frozenset[PodAddress]:
        """The revision's pods whose probe passed (the ones requests may go to)."""
        return self._prober.healthy(key)

    async def wait_healthy(self, key: RevisionKey, count: int = 1) -> None:
        """Return once `key` has at least `count` healthy pods (bound it with a timeout)."""
        if len(self._prober.healthy(key)) >= count:
            return
        waiter = (key, count, asyncio.get_running_loop().create_future())
        self._healthy_waiters.append(waiter)
        try:
            await waiter[2]
        finally:
            if waiter in self._healthy_waiters:
                self._healthy_waiters.remove(waiter)

    # -- internals ---------------------------------------------------------------------------
    def _apply(self, state: RevisionState, healthy: frozenset[PodAddress]) -> None:
        ep = state.endpoints
        state.throttler.update(healthy, ep.container_concurrency, ep.mode)
        self._notify()

    def _on_healthy(self, key: RevisionKey, healthy: frozenset[PodAddress]) -> None:
        state = self._handler.revisions.get(key)
        if state is not None:
            self._apply(state, healthy)

    def _on_connect_error(self, key: RevisionKey, pod: PodAddress) -> None:
        self.reprobe(key, pod)

    def _notify(self) -> None:
        for waiter in list(self._healthy_waiters):
            key, count, fut = waiter
            if fut.done() or len(self._prober.healthy(key)) >= count:
                self._healthy_waiters.remove(waiter)
                if not fut.done():
                    fut.set_result(None)
