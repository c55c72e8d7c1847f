"""Per-request deadlines (reference 4.5) on one timer whose deadline moves.

Theory of operation. A request may have three deadlines, all counted from its arrival
`t0` (so an admission wait counts): total (`t0 + timeout_s`), response start
(`t0 + response_start_timeout_s`, void once a response head was sent) and idle
(`last_write + idle_timeout_s`, moving with every write to the client). Rather than a
timer per deadline, or re-arming on every write, one `loop.call_at` timer is set for the
earliest deadline; when it fires, `expired` says which deadline (if any) has passed, and
if none has (the idle deadline moved on) the timer is re-armed for the new earliest.
Example: total 10 s, idle 2 s, t0=0, last write at t=3: the timer fires at 2, finds the
idle deadline now at 5, re-arms for 5; with no write since, at 5 `expired` → IDLE_TIMEOUT.

These are I/O deadlines, so they use the loop's clock (as `call_at` does); the Clock
passed to the server stamps arrival and end for the handler's accounting.
"""

from __future__ import annotations

import asyncio

from .errors import ErrorKind

_SLACK_S = 0.001  # uvloop's timers run on a millisecond clock and may fire a hair early


class Deadlines:
    """Deadline state and its timer; the subclass provides `head_sent` and `_deadline_passed`."""

    __slots__ = ("loop", "timer", "t0", "d_total", "d_start", "idle_s", "last_write")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None
        self.t0 = 0.0
        self.d_total: float | None = None
        self.d_start: float | None = None
        self.idle_s: float | None = None
        self.last_write = 0.0

    def next_deadline(self, head_sent: bool) -> float | None:
        """The earliest deadline still in force, or None."""
        deadline = self.d_total
        if self.d_start is not None and not head_sent:
            deadline = self.d_start if deadline is None else min(deadline, self.d_start)
        if self.idle_s is not None:
            idle = self.last_write + self.idle_s
            deadline = idle if deadline is None else min(deadline, idle)
        return deadline

    def expired(self, now: float, head_sent: bool) -> ErrorKind | None:
        """Which deadline has passed at `now` (total first), or None."""
        if self.d_total is not None and now >= self.d_total:
            return ErrorKind.TIMEOUT
        if self.d_start is not None and not head_sent and now >= self.d_start:
            return ErrorKind.RESPONSE_START_TIMEOUT
        if self.idle_s is not None and now >= self.last_write + self.idle_s:
            return ErrorKind.IDLE_TIMEOUT
        return None

    def _set_deadlines(self, total_s: float | None, start_s: float | None, idle_s: float | None) -> None:
        t0 = self.t0
        self.d_total = None if total_s is None else t0 + total_s
        self.d_start = None if start_s is None else t0 + start_s
        self.idle_s = idle_s
        if idle_s is not None and self.last_write < t0:
            self.last_write = t0
        self._rearm()

    def _rearm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.next_deadline(self.head_sent)
        self.timer = None if deadline is None else self.loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self.timer = None
        kind = self.expired(self.loop.time() + _SLACK_S, self.head_sent)
        if kind is None:
            self._rearm()
        else:
            self._deadline_passed(kind)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _deadline_passed(self, kind: ErrorKind) -> None:
        raise NotImplementedError
