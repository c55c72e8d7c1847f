"""The queue-proxy daemon: every part built from one `QueueProxyConfig` and run together.

Theory of operation (Knative's `pkg/queue/sharedmain/main.go`, reference 4.7):

    starting  -> serving    the proxy engine (QUEUE_SERVING_PORT -> 127.0.0.1:USER_PORT),
                            stats, Prometheus and admin servers listen; the Stat reporter
                            ticks every second; the readiness prober starts at once and
                            polls aggressively until the user container first answers.
    serving   -> draining   1st SIGTERM/SIGINT: health checks answer 503 at once; ordinary
                            requests are still served and each restarts the quiet period.
    draining  -> stopping   the quiet period passed with no new request (or a 2nd signal
                            cut it short): stop accepting, close idle connections, let
                            in-flight requests finish (bounded by the revision timeout,
                            which also bounds each request; a 3rd signal cuts them).
    stopping  -> exited     side servers and background tasks stop; `run()` returns.

Worked example, QUEUE_DRAIN_QUIET_SECONDS=1: SIGTERM at t=0 with 100 requests in flight,
one new request at t=0.4: the drain ends at t=1.4; the listener closes, the 100 finish
(say by t=2.5), then the daemon exits 0 having dropped nothing.

Listening addresses: inside a real pod (SERVING_POD_IP set and not loopback) the serving,
stats and metrics ports listen on all interfaces as Knative's do; a local pod (no pod IP,
or a loopback one) listens on 127.0.0.1 only. The admin port uses QUEUE_ADMIN_ADDRESS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal

from prometheus_client import CollectorRegistry

from dataplane import first_of
from dataplane.breaker import new_queue_proxy_breaker
from dataplane.clock import Clock, MonotonicClock
from dataplane.gctune import GcTuning, apply_gc_tuning
from dataplane.proxy import ProxyConfig, ProxyServer
from dataplane.stats import RequestStats, StatReporter

from .config import QueueProxyConfig
from .drain import Drainer
from .handler import QueueProxyHandler
from .metrics import RequestMetrics, ResourceLabels, register_metrics
from .readiness import AGGRESSIVE_RETRY_INTERVAL_S, ReadinessProber
from .servers import build_admin_handler, build_metrics_handler, build_stats_handler, start_side_server

__all__ = ["DaemonError", "QueueProxyDaemon", "serving_host"]

_log = logging.getLogger("queue_proxy")

# Knative's max idle upstream connections when containerConcurrency is 0 (reference 4.3).
_MAX_IDLE_UNLIMITED = 1000
# Added to the revision timeout when waiting for in-flight requests at shutdown: every
# request is already bounded by the timeout; this covers writing its last bytes.
_SHUTDOWN_MARGIN_S = 5.0
_SIDE_SERVER_SHUTDOWN_S = 2.0


class DaemonError(Exception):
    """The daemon could not start (a port in use, say); the message names what and why."""


def serving_host(config: QueueProxyConfig) -> str:
    """Where the serving, stats and metrics ports listen (see the module docstring)."""
    if not config.serving_pod_ip:
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(config.serving_pod_ip).is_loopback
    except ValueError:
        loopback = False
    return "127.0.0.1" if loopback else "0.0.0.0"


class QueueProxyDaemon:
    """The queue-proxy process: build from a config, `await run()` until shut down."""

    def __init__(self, config: QueueProxyConfig, clock: Clock | None = None,
                 gc_tuning: GcTuning | None = None) -> None:
        self.config = config
        # None leaves the collector alone (a daemon embedded in a test process, say).
        self.gc_tuning = gc_tuning
        self.clock = clock = clock or MonotonicClock()
        cc = config.container_concurrency
        self.breaker = new_queue_proxy_breaker(cc)
        self.stats = RequestStats(clock.now())
        self.reporter = StatReporter(self.stats, config.serving_pod, clock)
        self.metrics = RequestMetrics(
            ResourceLabels(config.serving_namespace, config.serving_service,
                           config.serving_configuration, config.serving_revision, config.serving_pod),
            has_queue_depth=cc > 0,
        )
        self.registry = CollectorRegistry()
        register_metrics(self.metrics, self.registry)
        self.drainer = Drainer(clock, config.drain_quiet_s)
        self.prober = ReadinessProber(config.readiness_probes, clock)
        self.handler = QueueProxyHandler(
            upstream=("127.0.0.1", config.user_port),
            breaker=self.breaker, stats=self.stats, metrics=self.metrics,
            drainer=self.drainer, readiness=self.prober, clock=clock,
            timeout_s=config.revision_timeout_s,
            response_start_timeout_s=config.revision_response_start_timeout_s,
            idle_timeout_s=config.revision_idle_timeout_s,
        )
        self.server = ProxyServer(
            self.handler,
            ProxyConfig(forwarded_shim=True, max_idle_per_upstream=cc or _MAX_IDLE_UNLIMITED),
            clock,
        )
        # Set by the first signal; the admin server's /wait-for-drain watches it (4.7).
        self.terminating = asyncio.Event()
        self._hurry = asyncio.Event()  # 2nd signal: end the quiet period now
        self._cut = asyncio.Event()  # 3rd signal: cut in-flight requests
        self._signals = 0
        self._side_servers: list[ProxyServer] = []

    def on_signal(self, signum: int = signal.SIGTERM) -> None:
        """SIGTERM/SIGINT: the first starts the drain; later ones shorten the shutdown."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            _log.info("%s: draining (health checks now fail; quiet period %gs)",
                      name, self.config.drain_quiet_s)
            self.terminating.set()
            self.drainer.start()
        elif self._signals == 2:
            _log.info("%s again: ending the quiet period now", name)
            self._hurry.set()
        else:
            _log.warning("%s a third time: cutting in-flight requests", name)
            self._cut.set()

    async def run(self) -> None:
        """Serve until a signal and the drain are through; raises DaemonError if a port fails."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            await self._start_servers()
            self._tune_gc()
            async with asyncio.TaskGroup() as tasks:
                reporter = tasks.create_task(self.reporter.run(), name="stat-reporter")
                warmup = tasks.create_task(self._wait_first_ready(), name="readiness-warmup")
                await self._serve_until_drained()
                await self._stop_serving()
                reporter.cancel()
                warmup.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self._close()

    async def _start_servers(self) -> None:
        config = self.config
        host = serving_host(config)
        try:
            await self.server.start(host, config.queue_serving_port)
        except OSError as exc:
            raise DaemonError(f"QUEUE_SERVING_PORT: cannot listen on {host}:{config.queue_serving_port}: "
                              f"{exc.strerror or exc}") from exc
        sides = (
            ("QUEUE_STATS_PORT", build_stats_handler(self.reporter.current), host, config.queue_stats_port),
            ("QUEUE_METRICS_PORT", build_metrics_handler(self.registry), host, config.queue_metrics_port),
            ("QUEUE_ADMIN_PORT", build_admin_handler(self.drainer, self.terminating),
             config.queue_admin_address, config.queue_admin_port),
        )
        for name, handler, side_host, port in sides:
            try:
                self._side_servers.append(await start_side_server(handler, host=side_host, port=port))
            except OSError as exc:
                raise DaemonError(f"{name}: cannot listen on {side_host}:{port}: {exc.strerror or exc}") from exc
        _log.info(
            "serving on %s:%d -> 127.0.0.1:%d (containerConcurrency %d, timeout %gs); "
            "stats :%d, metrics :%d, admin %s:%d",
            host, self.server.port, config.user_port, config.container_concurrency,
            config.revision_timeout_s, config.queue_stats_port, config.queue_metrics_port,
            config.queue_admin_address, config.queue_admin_port,
        )

    def _tune_gc(self) -> None:
        # Every server listens and every module is imported: what is alive now lives as
        # long as the process, so freezing it keeps full collections from walking it
        # while requests wait. Measured (bench/proxy_overhead.py, 1000 req/s, 5 rounds x 5 s,
        # two runs with the order swapped): p99 0.74-0.96x of unfrozen in all 4 cells,
        # p50, req/s and peak RSS (~33 MiB) unchanged; within the per-round spread.
        if self.gc_tuning is None:
            return
        report = apply_gc_tuning(self.gc_tuning)
        _log.info("gc: %d objects frozen, thresholds %s", report.frozen, report.thresholds)

    async def _wait_first_ready(self) -> None:
        # Knative's aggressive probing until the user container first answers, so the
        # first kubelet probe after it is up already finds it ready.
        started = self.clock.now()
        while not await self.prober.probe():
            await self.clock.sleep(AGGRESSIVE_RETRY_INTERVAL_S)
        _log.info("user container ready after %.2fs", self.clock.now() - started)

    async def _serve_until_drained(self) -> None:
        await self.terminating.wait()
        await first_of(self.drainer.wait_drained(), self._hurry.wait())

    async def _stop_serving(self) -> None:
        server = self.server
        server.stop_accepting()
        server.close_idle()
        busy = server.stats().busy
        _log.info("drained: no longer accepting; waiting for %d request(s) in flight", busy)
        await first_of(server.wait_idle(), self._cut.wait(),
                       asyncio.sleep(self.config.revision_timeout_s + _SHUTDOWN_MARGIN_S))
        dropped = await server.shutdown(timeout_s=0.0)
        if dropped:
            _log.warning("shutdown cut %d connection(s)", dropped)

    async def _close(self) -> None:
        await self.prober.aclose()
        await self.drainer.aclose()
        for side in reversed(self._side_servers):
            await side.shutdown(_SIDE_SERVER_SHUTDOWN_S)
        self._side_servers.clear()
        if self.server.pool is not None:
            self.server.stop_accepting()
            self.server.pool.close_idle()
