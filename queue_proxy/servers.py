"""The queue-proxy's side servers: stats (9090), Prometheus (9091), admin (8022).

They run on the proxy engine itself (`dataplane.proxy.LocalHandler`), not on a web
framework: the sidecar then imports nothing the proxy does not need (aiohttp alone
cost it 11-15 MB of RSS), and the side ports get the engine's head limits, timeouts
and graceful shutdown. Each handler is built by a function that takes its
dependencies and nothing global, and is served on a socket (tests bind port 0 first)
or a host and port through `start_side_server`.

- Stats: `GET /metrics` returns the latest Stat (reference 3.2). Knative's autoscaler
  sends `Accept: application/protobuf` and gets Knative's protobuf `Stat` with that content
  type; anything else gets the same stat as JSON (for people and curl). Before the first
  report the stat is empty apart from the pod name (the caller's `current_stat` decides;
  `StatReporter.current` does exactly that). Kubelet probes get 200 on any path.
- Metrics: `GET /metrics` renders the `CollectorRegistry` passed in (kubelet probes: 200).
- Admin: `/wait-for-drain` (any method, as Knative's mux) starts the drain and answers
  200 when it is over, or after the reset when no SIGTERM follows within 1 s. The wait
  is one task for that request; every other connection is served meanwhile.
Any other path gets 404; a method other than GET/HEAD on a `/metrics` gets 405.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

# The package import pulls in all of prometheus_client (~5 MB of RSS, measured): it is a
# project dependency that metrics.py needs anyway.
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from dataplane.proxy import GET_HEAD, LocalHandler, LocalResponse, LocalRoute, ProxyServer, RequestHead
from dataplane.proxy import headers as h
from dataplane.stat import PROTOBUF_CONTENT_TYPE, Stat

from .drain import Drainer
from .metrics import render_exposition

__all__ = [
    "WAIT_FOR_DRAIN_PATH",
    "build_admin_handler",
    "build_metrics_handler",
    "build_stats_handler",
    "start_side_server",
]

WAIT_FOR_DRAIN_PATH = "/wait-for-drain"
_METRICS_PATH = b"/metrics"
_PROTOBUF = PROTOBUF_CONTENT_TYPE.encode()
_JSON = b"application/json; charset=utf-8"
_PROMETHEUS = CONTENT_TYPE_LATEST.encode()
_KUBE_PROBE_UA = b"kube-probe/"
_OK = LocalResponse(200)


class _KubeletProbeOk(LocalHandler):
    """A LocalHandler whose kubelet probes succeed on any path while the server is up."""

    __slots__ = ()

    def begin(self, head: RequestHead):  # noqa: D102
        ua = head.get(h.USER_AGENT)
        if (ua is not None and ua.startswith(_KUBE_PROBE_UA)) or head.get(h.K_KUBELET_PROBE):
            return _OK
        return LocalHandler.begin(self, head)


def build_stats_handler(current_stat: Callable[[], Stat]) -> LocalHandler:
    """The autoscaler stats server: `GET /metrics` -> the latest Stat (protobuf or JSON)."""

    def metrics(head: RequestHead) -> LocalResponse:
        stat = current_stat()
        if _PROTOBUF in (head.get(b"accept") or b""):
            body = stat.to_protobuf()
            # An all-default Stat encodes to no bytes; its type must still be named.
            if not body:
                return LocalResponse(200, b"", ((b"content-type", _PROTOBUF),))
            return LocalResponse(200, body, content_type=_PROTOBUF)
        return LocalResponse(200, stat.to_json().encode(), content_type=_JSON)

    return _KubeletProbeOk({_METRICS_PATH: LocalRoute(metrics, GET_HEAD)})


def build_metrics_handler(registry: CollectorRegistry) -> LocalHandler:
    """The Prometheus server: `GET /metrics` renders `registry` in the text format."""

    def metrics(head: RequestHead) -> LocalResponse:
        return LocalResponse(200, render_exposition(registry), content_type=_PROMETHEUS)

    return _KubeletProbeOk({_METRICS_PATH: LocalRoute(metrics, GET_HEAD)})


def build_admin_handler(drainer: Drainer, terminating: asyncio.Event) -> LocalHandler:
    """The admin server: `/wait-for-drain` for the user container's preStop hook.

    `terminating` is the event the daemon sets on SIGTERM.
    """

    async def wait_for_drain() -> LocalResponse:
        await drainer.wait_for_drain(terminating)
        return _OK

    return LocalHandler({WAIT_FOR_DRAIN_PATH.encode(): LocalRoute(lambda head: wait_for_drain())})


async def start_side_server(
    handler: LocalHandler,
    *,
    sock: socket.socket | None = None,
    host: str | None = None,
    port: int | None = None,
) -> ProxyServer:
    """Serve `handler` on a bound socket or on host:port; `await server.shutdown(t)` stops it."""
    if (sock is None) == (port is None):
        raise ValueError("give either sock or port")
    server = ProxyServer(handler)
    if sock is not None:
        await server.start(sock=sock)
    else:
        await server.start(host or "127.0.0.1", port)
    return server
