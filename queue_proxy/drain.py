"""Draining on shutdown: serving -> draining -> drained (reference 4.7).

Theory of operation (knative/pkg `network/handlers/drain.go`, serving `sharedmain`):

    SERVING  --start(now)-->         DRAINING(deadline = now + quiet)
    DRAINING --request(now)-->       DRAINING(deadline = now + quiet)   each non-probe request
    DRAINING --now >= deadline-->    DRAINED                            sticky: later requests
                                                                        do not reopen it
    DRAINING/DRAINED --reset()-->    SERVING                            /wait-for-drain without
                                                                        a SIGTERM within 1 s

While DRAINING or DRAINED, health checks answer 503 `shutting down`, so the kubelet and the
activator take the pod out of rotation while requests already routed here still land.
Worked example with the 30 s quiet period: SIGTERM at t=0, requests at t=10 and t=25,
none after: the drain ends at t=55, then the daemon shuts its servers down gracefully.

`DrainState` is the pure machine (takes `now`); `Drainer` is the shell: it reads the
Clock, owns the one timer task that moves the state to DRAINED (the deadline moves on
each request; the timer just re-checks it when it wakes, so a request costs one clock
read and no timer operation), and lets callers wait.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass

from dataplane.clock import Clock

__all__ = ["DrainPhase", "DrainState", "DrainStats", "Drainer", "SIGTERM_GRACE_S"]

_log = logging.getLogger(__name__)

# Knative's admin handler resets a drain that no SIGTERM follows within one second
# (a liveness-triggered restart runs the preStop hook without terminating the pod).
SIGTERM_GRACE_S = 1.0


class DrainPhase(enum.Enum):
    """Where the queue-proxy is in its shutdown."""

    SERVING = "serving"
    DRAINING = "draining"
    DRAINED = "drained"


class DrainState:
    """The pure drain state machine; every transition takes `now`."""

    __slots__ = ("phase", "deadline", "quiet_s")

    def __init__(self, quiet_s: float) -> None:
        if quiet_s < 0:
            raise ValueError(f"quiet_s: {quiet_s!r} must be >= 0")
        self.quiet_s = quiet_s
        self.phase = DrainPhase.SERVING
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        """Begin draining (no effect if already draining or drained)."""
        if self.phase is DrainPhase.SERVING:
            self.phase = DrainPhase.DRAINING
            self.deadline = now + self.quiet_s

    def request(self, now: float) -> None:
        """A non-probe request arrived: restart the quiet period while draining."""
        if self.poll(now) is DrainPhase.DRAINING:
            self.deadline = now + self.quiet_s

    def poll(self, now: float) -> DrainPhase:
        """The phase at `now`, moving to DRAINED once the quiet period has passed."""
        if self.phase is DrainPhase.DRAINING and self.deadline is not None and now >= self.deadline:
            self.phase = DrainPhase.DRAINED
        return self.phase

    def reset(self) -> None:
        """Back to serving (the drain was a false alarm)."""
        self.phase = DrainPhase.SERVING
        self.deadline = None


class _Epoch:
    """One drain from start to its end; waiters hold on to the one they joined."""

    __slots__ = ("over", "drained")

    def __init__(self) -> None:
        self.over = asyncio.Event()
        self.drained = False


@dataclass(frozen=True, slots=True)
class DrainStats:
    """A snapshot of the drainer."""

    phase: DrainPhase
    deadline: float | None
    waiters: int


class Drainer:
    """The drain state on a Clock: start, note requests, wait until drained."""

    def __init__(self, clock: Clock, quiet_s: float = 30.0) -> None:
        self._clock = clock
        self._state = DrainState(quiet_s)
        self._timer: asyncio.Task[None] | None = None
        self._watchdogs: set[asyncio.Task[None]] = set()
        self._epoch: _Epoch | None = None  # the current (or last) drain
        self._waiters = 0

    @property
    def is_draining(self) -> bool:
        """True from the start of a drain until a reset: health checks answer 503."""
        return self._state.phase is not DrainPhase.SERVING

    def phase(self) -> DrainPhase:
        """The current phase."""
        return self._state.poll(self._clock.now())

    def request_seen(self) -> None:
        """Call for every non-probe request; restarts the quiet period while draining."""
        if self._state.phase is DrainPhase.DRAINING:
            self._state.request(self._clock.now())

    def start(self) -> None:
        """Start draining (idempotent); needs a running event loop."""
        if self._state.phase is not DrainPhase.SERVING:
            return
        self._state.start(self._clock.now())
        self._epoch = _Epoch()
        self._timer = asyncio.get_running_loop().create_task(self._run_timer(self._epoch))
        self._timer.add_done_callback(_report_crash)

    async def wait_drained(self) -> bool:
        """Wait until the current drain finishes: True when drained, False when it was reset."""
        epoch = self._epoch
        if epoch is None:
            raise RuntimeError("wait_drained() without a drain: call start() or drain()")
        self._waiters += 1
        try:
            await epoch.over.wait()
        finally:
            self._waiters -= 1
        return epoch.drained

    async def drain(self) -> bool:
        """Knative's `Drain()`: start the drain and wait for its end (True if drained)."""
        self.start()
        return await self.wait_drained()

    async def wait_for_drain(self, terminating: asyncio.Event) -> bool:
        """The admin `/wait-for-drain`: drain, but reset if no SIGTERM follows within 1 s.

        `terminating` is set by the daemon's SIGTERM handler. Returns True when drained,
        False when reset (Knative then still answers 200: the preStop hook must return).
        """
        self.start()
        watchdog = asyncio.get_running_loop().create_task(self._watch_for_sigterm(terminating))
        self._watchdogs.add(watchdog)
        watchdog.add_done_callback(self._watchdogs.discard)
        watchdog.add_done_callback(_report_crash)
        # The watchdog outlives this call on purpose: a drain shorter than the grace
        # period must still be undone when no SIGTERM comes, or the pod stays unready.
        return await self.wait_drained()

    def reset(self) -> None:
        """Abandon a drain: back to serving, and release everyone waiting."""
        if self._state.phase is DrainPhase.SERVING:
            return
        self._state.reset()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._epoch is not None:
            self._epoch.over.set()  # drained stays False: waiters learn it was reset
            self._epoch = None

    async def aclose(self) -> None:
        """Cancel the timer and watchdogs (daemon shutdown); waiters stay parked."""
        tasks = [t for t in (self._timer, *self._watchdogs) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> DrainStats:
        """A frozen snapshot for tests and debugging."""
        return DrainStats(self.phase(), self._state.deadline, self._waiters)

    async def _run_timer(self, epoch: _Epoch) -> None:
        # Sleep to the current deadline; a request may have moved it meanwhile, so check
        # again and sleep the remainder rather than rescheduling a timer per request.
        while True:
            deadline = self._state.deadline
            if deadline is None:
                return
            now = self._clock.now()
            if self._state.poll(now) is DrainPhase.DRAINED:
                epoch.drained = True
                epoch.over.set()
                return
            await self._clock.sleep(deadline - now)

    async def _watch_for_sigterm(self, terminating: asyncio.Event) -> None:
        await self._clock.sleep(SIGTERM_GRACE_S)
        if not terminating.is_set():
            _log.info("no SIGTERM within %ss of /wait-for-drain: resetting the drain", SIGTERM_GRACE_S)
            self.reset()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("drain task failed", exc_info=task.exception())
