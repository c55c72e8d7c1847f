"""The Prometheus endpoint of `surge autoscaler` and `surge activator` on Kubernetes.

Knative's components serve their metrics on :9090 (`http-metrics`, as config/ names the
port); Prometheus scrapes `GET /metrics`. The registry is rendered on the event loop at
scrape time: its collectors read live in-memory state, which is cheap, and rendering
there needs no locking.
"""

from __future__ import annotations

from aiohttp import web
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from dataplane.metrics import render_exposition

__all__ = ["DEFAULT_METRICS_PORT", "MetricsServer"]

DEFAULT_METRICS_PORT = 9090


class MetricsServer:
    """`GET /metrics` (and a `/healthz` for probes) over one registry; start, then close."""

    def __init__(self, registry: CollectorRegistry, legacy_counters: Sequence[str] = ()) -> None:
        self._registry = registry
        self._legacy_counters = tuple(legacy_counters)  # bare OpenCensus counter names
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=render_exposition(self._registry, self._legacy_counters),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks a free one, then in `self.port`)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
