"""Start, serve and drain the proxy: the listening socket, its connections, the pool."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from ..clock import Clock, MonotonicClock
from .hooks import Handler
from .pool import PoolStats, UpstreamPool
from .protocol import ClientConnection

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Engine limits and timeouts; durations in seconds, None = no limit."""

    # 64 KiB head, 100 headers: Go's net/http allows 1 MiB, but a Knative request head
    # is a few hundred bytes; 64 KiB leaves room for large cookies/JWTs.
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    # A client has this long to send a whole head (Go's ReadHeaderTimeout).
    header_timeout_s: float | None = 10.0
    # An idle keep-alive client connection is closed after this long.
    keepalive_timeout_s: float | None = 75.0
    # Upstream pool: Knative's QP keeps max-idle = container concurrency (1000 if 0).
    max_idle_per_upstream: int = 1000
    upstream_idle_timeout_s: float = 90.0   # Go's Transport.IdleConnTimeout
    connect_timeout_s: float = 10.0
    # Transport write buffer high-water mark in both directions (backpressure).
    write_high_water: int = 64 * 1024
    # Build `Forward` from X-Forwarded-* when absent (the queue-proxy turns this on).
    forwarded_shim: bool = False
    # Upstream attempts per request, including the first (bounds Forward.retry).
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """A snapshot of the server for tests, drain decisions and debugging."""

    connections: int
    busy: int
    pool: PoolStats


class ProxyServer:
    """The engine: accepts clients and runs each request through the handler."""

    def __init__(self, handler: Handler, config: ProxyConfig | None = None, clock: Clock | None = None) -> None:
        self.handler = handler
        self.config = config or ProxyConfig()
        self.clock = clock or MonotonicClock()
        self.connections: set[ClientConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: UpstreamPool | None = None
        self._server: asyncio.Server | None = None
        self._drained: asyncio.Event | None = None

    def forget(self, conn: ClientConnection) -> None:
        """A client connection closed (called from its connection_lost)."""
        self.connections.discard(conn)
        if not self.connections and self._drained is not None:
            self._drained.set()

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        """Listen on `sock` (preferred in tests: bind port 0 first) or on host:port."""
        self.loop = asyncio.get_running_loop()
        config = self.config
        self.pool = UpstreamPool(
            self.loop, config.max_idle_per_upstream, config.upstream_idle_timeout_s,
            config.connect_timeout_s, config.write_high_water,
        )
        factory = self._make_connection
        if sock is not None:
            self._server = await self.loop.create_server(factory, sock=sock, backlog=1024)
        else:
            self._server = await self.loop.create_server(factory, host, port, backlog=1024)

    def _make_connection(self) -> ClientConnection:
        return ClientConnection(self)

    @property
    def port(self) -> int:
        """The port actually listened on."""
        return self._server.sockets[0].getsockname()[1]

    def stats(self) -> ProxyStats:
        """Connections open, how many have a request in progress, and the pool."""
        busy = sum(1 for c in self.connections if not c.is_idle)
        return ProxyStats(len(self.connections), busy, self.pool.stats())

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections carry on."""
        if self._server is not None:
            self._server.close()

    def close_idle(self) -> int:
        """Close idle keep-alive connections and ask busy ones to close after their response."""
        closed = 0
        for conn in list(self.connections):
            closed += conn.is_idle
            conn.shutdown()
        return closed

    async def wait_idle(self) -> None:
        """Return once every client connection has closed."""
        if self.connections:
            self._drained = asyncio.Event()
            await self._drained.wait()

    async def shutdown(self, timeout_s: float) -> int:
        """Graceful stop: stop accepting, drain, wait up to `timeout_s`, cut the rest.

        Returns how many connections had to be cut.
        """
        self.stop_accepting()
        self.close_idle()
        cut = 0
        try:
            async with asyncio.timeout(timeout_s):
                await self.wait_idle()
        except TimeoutError:
            cut = len(self.connections)
            for conn in list(self.connections):
                conn.abort()
            logger.warning("shutdown deadline passed: cut %d connection(s)", cut)
        self.pool.close_idle()
        if self._server is not None:
            await self._server.wait_closed()
        return cut
