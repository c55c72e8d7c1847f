"""The autoscaler's stat server: where activators push their per-second Stats.

Knative's pkg/autoscaler/statserver/server.go, on the same port (8080) and any path:

* a kubelet probe (User-Agent `kube-probe/...` or a `K-Kubelet-Probe` header) gets 200;
* a websocket upgrade opens a stream of binary frames, each one `WireStatMessages` batch;
  every (revision, stat) in it is handed to `ingest(key, stat, now)` with the Clock's
  now. A malformed frame is logged, counted and skipped; the connection stays up, since
  the next second's batch is independent of this one. Text frames are dropped.
* a `POST` of the same bytes is Surge's fallback for clients without websockets (204 on
  success, 400 with the reason for a malformed body).
* on shutdown every open websocket is closed with code 1012 (service restart), so an
  activator reconnects, possibly to another replica, instead of reporting an error.

Stamping unstamped stats with the current second and the poke rule are the ingest
function's job (the multiscaler), so the in-process path of local mode behaves the same.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from dataplane.clock import Clock
from dataplane.stat import Stat, decode_wire_stats
from dataplane.types import RevisionKey

__all__ = ["Ingest", "StatServer", "StatServerStats", "is_kubelet_probe"]

log = logging.getLogger(__name__)

Ingest = Callable[[RevisionKey, Stat, float], None]

DEFAULT_PORT = 8080  # Knative's statsServerAddr
# aiohttp's default frame limit; a batch is ~80 bytes per revision, so 4 MiB is ~50k
# revisions in one second from one activator.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
KUBE_PROBE_UA_PREFIX = "kube-probe/"
KUBELET_PROBE_HEADER = "K-Kubelet-Probe"
_EMPTY_STAT = Stat()


def is_kubelet_probe(request: web.Request) -> bool:
    """Whether a request is a Kubernetes probe (knative/networking `IsKubeletProbe`)."""
    return (request.headers.get("User-Agent", "").startswith(KUBE_PROBE_UA_PREFIX)
            or bool(request.headers.get(KUBELET_PROBE_HEADER)))


@dataclass(frozen=True, slots=True)
class StatServerStats:
    """Counters of the stat server, for tests and debugging."""

    open_websockets: int
    websockets_accepted: int
    batches: int
    stats_ingested: int
    malformed_batches: int
    dropped_frames: int
    ingest_errors: int


class StatServer:
    """An aiohttp server that feeds activator stat batches to an ingest function."""

    def __init__(
        self,
        ingest: Ingest,
        *,
        clock: Clock,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        close_timeout_s: float = 5.0,
    ) -> None:
        self._ingest = ingest
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self._close_timeout_s = close_timeout_s
        self._websockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._accepted = self._batches = self._ingested = 0
        self._malformed = self._dropped = self._ingest_errors = 0

    def make_app(self) -> web.Application:
        """The aiohttp application (every path, as Knative's mux on "/")."""
        app = web.Application(client_max_size=self._max_message_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_shutdown.append(self._close_websockets)
        return app

    async def start(
        self, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
        sock: socket.socket | None = None,
    ) -> None:
        """Serve on `sock` if given (tests bind port 0), else on host:port."""
        runner = web.AppRunner(self.make_app(), shutdown_timeout=self._close_timeout_s,
                               access_log=None)
        await runner.setup()
        try:
            site = (web.SockSite(runner, sock) if sock is not None
                    else web.TCPSite(runner, host, port))
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    @property
    def port(self) -> int:
        """The port being served; raises RuntimeError before `start()`."""
        if self._port is None:
            raise RuntimeError("StatServer is not started")
        return self._port

    async def close(self) -> None:
        """Stop accepting, close websockets with 1012, and wait for handlers to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _close_websockets(self, app: web.Application) -> None:
        for ws in list(self._websockets):
            await ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"Restarting")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if is_kubelet_probe(request):
            return web.Response(status=200)
        if request.method == "POST":
            return self._handle_post(await request.read())
        if request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        ws = web.WebSocketResponse(max_msg_size=self._max_message_bytes,
                                   timeout=self._close_timeout_s)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="expected a websocket upgrade or a POST "
                                                 "of WireStatMessages\n")
        await ws.prepare(request)
        self._accepted += 1
        self._websockets.add(ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    self._deliver(msg.data)
                else:
                    # Knative drops anything but binary frames and keeps reading.
                    self._dropped += 1
                    log.warning("stat server: dropped a %s frame", msg.type.name)
        finally:
            self._websockets.discard(ws)
        return ws

    def _handle_post(self, body: bytes) -> web.Response:
        try:
            self._deliver(body, raise_malformed=True)
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        return web.Response(status=204)

    def _deliver(self, data: bytes, *, raise_malformed: bool = False) -> None:
        try:
            batch = decode_wire_stats(data)
        except ValueError:
            self._malformed += 1
            log.warning("stat server: malformed WireStatMessages batch of %d bytes", len(data))
            if raise_malformed:
                raise
            return
        self._batches += 1
        now = self._clock.now()
        for key, stat in batch:
            if stat == _EMPTY_STAT:
                continue  # Knative skips a message without a stat; an empty one is that
            try:
                self._ingest(key, stat, now)
            except Exception:
                # The edge of one message: the rest of the batch still counts.
                self._ingest_errors += 1
                log.exception("stat server: ingesting a stat for %s failed", key)
                continue
            self._ingested += 1

    def stats(self) -> StatServerStats:
        """A frozen record of the counters."""
        return StatServerStats(
            open_websockets=len(self._websockets), websockets_accepted=self._accepted,
            batches=self._batches, stats_ingested=self._ingested,
            malformed_batches=self._malformed, dropped_frames=self._dropped,
            ingest_errors=self._ingest_errors,
        )
