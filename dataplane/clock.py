"""The one source of time for everything that decides on time.

Logic modules take `now: float` (monotonic seconds); components with timers take a
`Clock` in their constructor so tests can drive them with `FakeClock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in float seconds and a sleep that honours it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: `time.monotonic` and `asyncio.sleep`."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when a test calls `advance()`.

    It starts at 1000.0 so code that treats 0 as "unset" shows its bug.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self._now + max(0.0, seconds), next(self._seq), fut))
        await fut

    def set(self, now: float) -> None:
        """Jump to an absolute time without waking sleepers (for pure-logic tests)."""
        self._now = now

    async def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed, in order."""
        target = self._now + seconds
        while self._waiters and self._waiters[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._waiters)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            # Let the woken task run before later deadlines fire, as real time would.
            await asyncio.sleep(0)
        self._now = target
        await asyncio.sleep(0)

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (for tests that wait for a timer to be armed)."""
        return sum(1 for _, _, f in self._waiters if not f.done())
