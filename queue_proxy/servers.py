"""The queue-proxy's side servers (aiohttp): stats (9090), Prometheus (9091), admin (8022).

Each app is built by a function that takes its dependencies and nothing global, and runs
on a socket (tests bind port 0 first) or a host and port through `start_app`.

- Stats: `GET /metrics` returns the latest Stat (reference 3.2). Knative's autoscaler
  sends `Accept: application/protobuf` and gets Knative's protobuf `Stat` with that content
  type; anything else gets the same stat as JSON (for people and curl). Before the first
  report the stat is empty apart from the pod name (the caller's `current_stat` decides;
  `StatReporter.current` does exactly that). Kubelet probes get 200 on any path.
- Metrics: `GET /metrics` renders the `CollectorRegistry` passed in.
- Admin: `/wait-for-drain` (any method, as Knative's mux) starts the drain and answers
  200 when it is over, or after the reset when no SIGTERM follows within 1 s.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from dataplane.stat import PROTOBUF_CONTENT_TYPE, Stat

from .drain import Drainer

__all__ = [
    "WAIT_FOR_DRAIN_PATH",
    "build_admin_app",
    "build_metrics_app",
    "build_stats_app",
    "start_app",
]

WAIT_FOR_DRAIN_PATH = "/wait-for-drain"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_kubelet_probe(request: web.Request) -> bool:
    return request.headers.get("User-Agent", "").startswith("kube-probe/") or bool(
        request.headers.get("K-Kubelet-Probe")
    )


@web.middleware
async def _kubelet_probe_ok(request: web.Request, handler: _Handler) -> web.StreamResponse:
    # Kubelet probes succeed on any path while the server is up.
    if _is_kubelet_probe(request):
        return web.Response(status=200)
    return await handler(request)


def build_stats_app(current_stat: Callable[[], Stat]) -> web.Application:
    """The autoscaler stats app: `GET /metrics` -> the latest Stat (protobuf or JSON)."""

    async def metrics(request: web.Request) -> web.Response:
        stat = current_stat()
        if PROTOBUF_CONTENT_TYPE in request.headers.get("Accept", ""):
            return web.Response(body=stat.to_protobuf(), content_type=PROTOBUF_CONTENT_TYPE)
        return web.Response(text=stat.to_json(), content_type="application/json")

    app = web.Application(middlewares=[_kubelet_probe_ok])
    app.router.add_get("/metrics", metrics)
    return app


def build_metrics_app(registry: CollectorRegistry) -> web.Application:
    """The Prometheus app: `GET /metrics` renders `registry` in the text format."""

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application(middlewares=[_kubelet_probe_ok])
    app.router.add_get("/metrics", metrics)
    return app


def build_admin_app(drainer: Drainer, terminating: asyncio.Event) -> web.Application:
    """The admin app: `/wait-for-drain` for the user container's preStop hook.

    `terminating` is the event the daemon sets on SIGTERM.
    """

    async def wait_for_drain(request: web.Request) -> web.Response:
        await drainer.wait_for_drain(terminating)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", WAIT_FOR_DRAIN_PATH, wait_for_drain)
    return app


async def start_app(
    app: web.Application,
    *,
    sock: socket.socket | None = None,
    host: str | None = None,
    port: int | None = None,
    shutdown_timeout_s: float = 5.0,
) -> web.AppRunner:
    """Serve `app` on a bound socket or on host:port; `await runner.cleanup()` stops it."""
    if (sock is None) == (port is None):
        raise ValueError("give either sock or port")
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        if sock is not None:
            site: web.BaseSite = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
