"""Keep-alive pool of upstream connections, per upstream address.

Theory of operation: each address has a LIFO stack of idle connections; `try_acquire`
pops the most recently used one (the likeliest still open) and `release` pushes a
connection back if the stack holds fewer than `max_idle_per_upstream`, else closes it.
An idle connection closed by the upstream notices at once (its protocol gets EOF and
removes itself through `discard`), and `try_acquire` also skips any whose transport is
closing, so a dead connection is never handed out knowingly. One sweep timer closes
connections idle for `idle_timeout_s`: the oldest are at the bottom of each stack, so a
sweep pops from the bottom while expired and re-arms for the next expiry. Example: with
idle_timeout_s=90, connections released at t=0 and t=30 are closed by sweeps at t=90
and t=120.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .upstream import UpstreamConnection


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool for tests and debugging."""

    idle: dict[tuple[str, int], int]
    connects: int
    reuses: int


class UpstreamPool:
    """Idle keep-alive connections by upstream address, plus connect."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_idle_per_upstream: int = 100,
        idle_timeout_s: float = 90.0,
        connect_timeout_s: float = 10.0,
        write_high_water: int = 64 * 1024,
    ) -> None:
        self.loop = loop
        self.max_idle_per_upstream = max_idle_per_upstream
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.write_high_water = write_high_water
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.connects = 0
        self.reuses = 0

    def try_acquire(self, key: tuple[str, int]) -> UpstreamConnection | None:
        """An idle open connection to `key`, or None (then call `connect`)."""
        stack = self._idle.get(key)
        while stack:
            conn = stack.pop()
            if not conn.closed and not conn.transport.is_closing():
                conn.reused = True
                self.reuses += 1
                return conn
        return None

    async def connect(self, key: tuple[str, int]) -> UpstreamConnection:
        """Open a new connection to `key` (raises OSError or TimeoutError)."""
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await self.loop.create_connection(
                lambda: UpstreamConnection(self, key), key[0], key[1]
            )
        self.connects += 1
        conn.reused = False
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Keep `conn` for reuse if it can be kept and there is room; else close it."""
        conn.exchange = None
        if conn.closed or not conn.keep_alive or conn.transport.is_closing():
            conn.close()
            return
        stack = self._idle.setdefault(conn.key, [])
        if len(stack) >= self.max_idle_per_upstream:
            conn.close()
            return
        conn.set_reading(True)  # an idle connection must see the upstream's close
        conn.idle_since = self.loop.time()
        stack.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_at(conn.idle_since + self.idle_timeout_s, self._on_sweep)

    def discard(self, conn: UpstreamConnection) -> None:
        """Forget a connection that closed (called from its connection_lost)."""
        stack = self._idle.get(conn.key)
        if stack and conn in stack:
            stack.remove(conn)

    def _on_sweep(self) -> None:
        self._sweep = None
        now = self.loop.time()
        next_expiry = None
        for stack in self._idle.values():
            while stack and stack[0].idle_since + self.idle_timeout_s <= now:
                stack.pop(0).close()
            if stack:
                expiry = stack[0].idle_since + self.idle_timeout_s
                next_expiry = expiry if next_expiry is None else min(next_expiry, expiry)
        if next_expiry is not None:
            self._sweep = self.loop.call_at(next_expiry, self._on_sweep)

    def close_idle(self) -> None:
        """Close every idle connection (shutdown)."""
        for stack in self._idle.values():
            while stack:
                stack.pop().close()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def stats(self) -> PoolStats:
        """Idle connections per address and connect/reuse counters."""
        return PoolStats({k: len(v) for k, v in self._idle.items() if v}, self.connects, self.reuses)
