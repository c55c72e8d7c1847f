"""Per-revision throttler: admit a request to a pod, or park it until one has room.

Theory of operation (Knative `pkg/activator/net/throttler.go`, reference 5.2). One
`Throttler` per revision holds a `PodTracker` per healthy (probed) pod, in `(host, port)`
order, and a FIFO of parked requests.

- Capacity. With containerConcurrency CC > 0 each pod takes at most CC requests from
  this activator, so the revision-wide capacity is CC x healthy pods; with CC 0 pods are
  unlimited and the revision is open while at least one pod is healthy, closed at zero
  (Knative's "infinite breaker"). Knative stacks a revision-wide breaker on per-pod
  breakers and retries when the two disagree; one queue over the pod trackers gives the
  same admissions without that race, because the event loop makes "pick a pod with room
  and take its slot" atomic.
- Admission in PROXY mode: `try_reserve()` picks a pod with room using Knative's
  load-balancing policy for CC (lb_policy.py) unless someone is already parked (no
  queue jumping); otherwise `wait_reserve(deadline)` parks the caller. Every `release()`
  and every pod or mode update hands free slots to the oldest parked callers, one slot
  per waiter, never a thundering herd.
- Admission in SERVE mode: the activator is only the ingress; requests go straight to a
  healthy pod, by the same policy while a pod has room and to the least-loaded pod when
  all are full (the pod's queue-proxy queues it, as it would behind Knative's ingress).
  Only a revision with no healthy pod parks callers, so a flip to SERVE never strands
  anyone: the flip hands every parked caller a pod at once.
- Bounds. At most `queue_depth` callers park (10000, Knative's `breakerQueueDepth`); the
  next one gets `QueueFullError` at once. A parked caller leaves with
  `CapacityTimeoutError` at its deadline (the revision timeout, counted from arrival)
  and with `RevisionGoneError` when the revision is removed. A caller cancelled while
  parked leaves the queue holding nothing.

Pod changes. A pod dropped from the healthy list takes no new request at once; its
tracker lives on, off the list, until its in-flight requests are released, and is
reused if the pod comes back so the count stays true. Requests count on the tracker
they were given, so `release(tracker)` is always exact.

Worked example, CC 1, pods a and b, three requests: r1 → a, r2 → b, r3 parks. r1 ends:
release(a) hands a to r3 at once. The control plane removes b while r2 runs: b leaves
the list, r2 finishes on b, and the next arrival parks until a is free.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from dataplane import Clock, Mode, PodAddress, RevisionKey

from .lb_policy import least_loaded, policy_for

__all__ = [
    "DEFAULT_QUEUE_DEPTH",
    "CapacityError",
    "CapacityTimeoutError",
    "PodTracker",
    "QueueFullError",
    "RevisionGoneError",
    "Throttler",
    "ThrottlerStats",
]

# Knative's activator `breakerQueueDepth`: in practice the wait is bounded by the
# revision timeout long before this many requests park.
DEFAULT_QUEUE_DEPTH = 10_000


class CapacityError(Exception):
    """A request could not be given a pod; `reason` is the body of its 503."""

    reason = "no capacity"

    def __init__(self, key: RevisionKey) -> None:
        super().__init__(f"{self.reason} for revision {key}")
        self.key = key


class QueueFullError(CapacityError):
    """Too many requests are parked for this revision."""

    reason = "pending request queue full"


class CapacityTimeoutError(CapacityError, TimeoutError):
    """The request's deadline passed while it waited for a pod."""

    reason = "timed out waiting for capacity"


class RevisionGoneError(CapacityError):
    """The revision was removed while the request waited."""

    reason = "revision removed while waiting for capacity"


class PodTracker:
    """One pod as the throttler sees it: requests in flight from here and the CC limit."""

    __slots__ = ("pod", "in_flight", "capacity", "active")

    def __init__(self, pod: PodAddress, capacity: int) -> None:
        self.pod = pod
        self.in_flight = 0
        self.capacity = capacity  # 0 = unlimited (CC 0)
        self.active = True  # False once the pod left the healthy list

    def __repr__(self) -> str:
        return f"PodTracker({self.pod}, in_flight={self.in_flight}, capacity={self.capacity})"


@dataclass(frozen=True, slots=True)
class ThrottlerStats:
    """A snapshot of one revision's throttler."""

    mode: Mode
    container_concurrency: int
    pods: int  # healthy pods on the list
    capacity: int | None  # CC x pods; None = unlimited (CC 0 with a pod)
    in_flight: int  # requests holding a pod, on the list or not
    waiting: int  # parked requests


class Throttler:
    """Admission for one revision: a pod with room now, or a place in the queue."""

    def __init__(
        self,
        key: RevisionKey,
        clock: Clock,
        *,
        queue_depth: int = DEFAULT_QUEUE_DEPTH,
        rng: random.Random | None = None,
    ) -> None:
        if queue_depth < 0:
            raise ValueError(f"queue_depth: {queue_depth!r} must be >= 0")
        self.key = key
        self._clock = clock
        self._queue_depth = queue_depth
        self._rng = rng if rng is not None else random.Random()
        self._mode = Mode.PROXY
        self._cc = 0
        self._policy = policy_for(0)
        self._cursor = 0
        self._trackers: list[PodTracker] = []
        self._retired: dict[PodAddress, PodTracker] = {}  # off the list, still busy
        self._waiters: deque[asyncio.Future[PodTracker]] = deque()
        self._waiting = 0  # waiters still pending (cancelled ones may linger in the deque)
        self._closed = False

    # -- state from the control plane and the prober ---------------------------------
    @property
    def mode(self) -> Mode:
        """The mode the control plane last set."""
        return self._mode

    @property
    def has_pods(self) -> bool:
        """Whether at least one healthy pod is on the list."""
        return bool(self._trackers)

    def update(self, pods: Iterable[PodAddress], container_concurrency: int, mode: Mode) -> None:
        """Replace the healthy pods, the CC and the mode; parked callers get freed slots."""
        if container_concurrency < 0:
            raise ValueError(f"container_concurrency: {container_concurrency!r} must be >= 0")
        wanted = sorted(set(pods))
        current = {t.pod: t for t in self._trackers}
        trackers = []
        for pod in wanted:
            tracker = current.pop(pod, None) or self._retired.pop(pod, None)
            if tracker is None:
                tracker = PodTracker(pod, container_concurrency)
            tracker.active = True
            tracker.capacity = container_concurrency
            trackers.append(tracker)
        for tracker in current.values():  # left the list: no new requests from now on
            tracker.active = False
            if tracker.in_flight > 0:
                self._retired[tracker.pod] = tracker
        self._trackers = trackers
        if container_concurrency != self._cc:
            self._cc = container_concurrency
            self._policy = policy_for(container_concurrency)
        self._mode = mode
        self._dispatch()

    @property
    def capacity(self) -> int | None:
        """CC x healthy pods; None means unlimited (CC 0 with at least one pod)."""
        if self._cc == 0:
            return None if self._trackers else 0
        return self._cc * len(self._trackers)

    # -- admission ----------------------------------------------------------------------
    def try_reserve(self) -> PodTracker | None:
        """A pod with its slot taken, if one can be had now without waiting; else None."""
        if self._waiting and self._mode is Mode.PROXY:
            return None  # parked callers go first
        return self._take()

    async def wait_reserve(self, deadline: float | None) -> PodTracker:
        """A pod with its slot taken, parking until one frees up or `deadline` (Clock s).

        Raises `QueueFullError`, `CapacityTimeoutError` or `RevisionGoneError`. The caller
        must `release()` the tracker exactly once.
        """
        if self._closed:
            raise RevisionGoneError(self.key)
        tracker = self.try_reserve()
        if tracker is not None:
            return tracker
        if self._waiting >= self._queue_depth:
            raise QueueFullError(self.key)
        if deadline is not None and deadline <= self._clock.now():
            raise CapacityTimeoutError(self.key)
        fut: asyncio.Future[PodTracker] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._waiting += 1
        timer = None if deadline is None else asyncio.ensure_future(self._expire(fut, deadline))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.cancelled():  # we left while parked: nobody else settled the future
                self._forget(fut)
            elif fut.exception() is None:
                self.release(fut.result())  # handed a pod just as we were cancelled
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self, tracker: PodTracker) -> None:
        """Give back the slot a reserve took; the next parked caller may get it."""
        if tracker.in_flight <= 0:
            raise RuntimeError(f"released {tracker.pod} more often than reserved")
        tracker.in_flight -= 1
        if not tracker.active:
            if tracker.in_flight == 0 and self._retired.get(tracker.pod) is tracker:
                del self._retired[tracker.pod]
            return
        if self._waiting:
            self._dispatch()

    def close(self) -> None:
        """The revision is gone: every parked caller gets `RevisionGoneError`."""
        self._closed = True
        self._trackers = []
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(RevisionGoneError(self.key))
        self._waiting = 0

    def stats(self) -> ThrottlerStats:
        """A frozen snapshot for tests and debugging."""
        in_flight = sum(t.in_flight for t in self._trackers)
        in_flight += sum(t.in_flight for t in self._retired.values())
        return ThrottlerStats(
            self._mode, self._cc, len(self._trackers), self.capacity, in_flight, self._waiting
        )

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"Throttler({self.key}, {s.mode.value}, pods={s.pods}, in_flight={s.in_flight}, "
            f"waiting={s.waiting})"
        )

    # -- internals ------------------------------------------------------------------------
    def _take(self) -> PodTracker | None:
        trackers = self._trackers
        if not trackers:
            return None
        index, self._cursor = self._policy(trackers, self._cursor, self._rng)
        if index is None:
            if self._mode is Mode.PROXY:
                return None
            index = least_loaded(trackers)  # SERVE: the pod's own queue absorbs the burst
        tracker = trackers[index]
        tracker.in_flight += 1
        return tracker

    def _dispatch(self) -> None:
        """Hand free slots to parked callers, oldest first, one slot each."""
        waiters = self._waiters
        while self._waiting:
            while waiters and waiters[0].done():
                waiters.popleft()  # cancelled or expired; already uncounted
            if not waiters:
                break
            tracker = self._take()
            if tracker is None:
                break
            self._waiting -= 1
            waiters.popleft().set_result(tracker)

    def _forget(self, fut: asyncio.Future[PodTracker]) -> None:
        self._waiting -= 1
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass  # already popped by _dispatch's sweep of settled futures

    async def _expire(self, fut: asyncio.Future[PodTracker], deadline: float) -> None:
        await self._clock.sleep(deadline - self._clock.now())
        if not fut.done():
            self._forget(fut)
            fut.set_exception(CapacityTimeoutError(self.key))
