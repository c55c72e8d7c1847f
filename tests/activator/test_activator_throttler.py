"""Throttler: admission, parking, deadlines, pod and mode changes, stepped on a FakeClock.

Each case is a list of steps; the body runs them in order:
    ("update", pods, cc, mode)   set the healthy pods
    ("try", pod | None)          try_reserve; the pod it must give (kept as held)
    ("wait", name, timeout_s)    start wait_reserve in a task (deadline = now + timeout_s)
    ("release", pod)             release one held reservation on pod
    ("cancel", name)             cancel a waiting task
    ("advance", seconds)         move the fake clock
    ("expect", {name: outcome})  outcome: a pod, "waiting", or an exception class name
    ("stats", dict)              fields of ThrottlerStats
"""

from __future__ import annotations

import asyncio
import random

import pytest

from activator.throttler import RevisionGoneError, Throttler
from dataplane import Mode, PodAddress, RevisionKey

KEY = RevisionKey("default", "hello-00001")
A = PodAddress("127.0.0.1", 9001)
B = PodAddress("127.0.0.1", 9002)
C = PodAddress("127.0.0.1", 10003)  # sorts after B numerically, before it as a string
P, S = Mode.PROXY, Mode.SERVE

CASES = [
    pytest.param([
        ("update", [B, A], 1, P), ("try", A), ("try", B), ("try", None),
        ("stats", dict(pods=2, capacity=2, in_flight=2, waiting=0)),
    ], id="cc1-first-available-in-port-order"),
    pytest.param([
        ("update", [A, B], 1, P), ("try", A), ("try", B), ("wait", "r3", 10), ("wait", "r4", 10),
        ("expect", {"r3": "waiting", "r4": "waiting"}), ("release", B),
        ("expect", {"r3": B, "r4": "waiting"}), ("release", A), ("expect", {"r4": A}),
    ], id="parked-callers-get-freed-slots-in-arrival-order"),
    pytest.param([
        ("update", [A], 1, P), ("try", A), ("wait", "r2", 10), ("release", A),
        ("expect", {"r2": A}), ("try", None),
    ], id="release-hands-the-slot-over-without-a-gap"),
    pytest.param([
        ("update", [A], 2, P), ("try", A), ("try", A), ("wait", "r3", 10), ("release", A),
        ("try", None), ("expect", {"r3": A}),
    ], id="no-queue-jumping"),
    pytest.param([
        ("update", [A], 1, P), ("try", A), ("wait", "r2", 5), ("advance", 4.9),
        ("expect", {"r2": "waiting"}), ("advance", 0.2),
        ("expect", {"r2": "CapacityTimeoutError"}), ("stats", dict(waiting=0)),
        ("release", A), ("try", A),
    ], id="deadline-gives-up-at-the-revision-timeout"),
    pytest.param([
        ("update", [], 0, P), ("wait", "r1", 10), ("wait", "r2", 10), ("wait", "r3", 10),
        ("expect", {"r3": "QueueFullError", "r1": "waiting"}), ("stats", dict(waiting=2)),
    ], id="queue-bound-refuses-at-once"),
    pytest.param([
        ("update", [A], 1, P), ("try", A), ("wait", "r2", 10), ("wait", "r3", 10),
        ("cancel", "r2"), ("stats", dict(waiting=1)), ("release", A), ("expect", {"r3": A}),
        ("stats", dict(in_flight=1, waiting=0)),
    ], id="cancelled-waiter-leaves-the-queue-holding-nothing"),
    pytest.param([
        ("update", [], 0, P), ("stats", dict(capacity=0)), ("try", None), ("wait", "r1", 10),
        ("wait", "r2", 10), ("update", [A], 0, P), ("expect", {"r1": A, "r2": A}),
        ("stats", dict(capacity=None, in_flight=2)),
    ], id="cc0-closed-at-zero-pods-open-with-one"),
    pytest.param([
        ("update", [], 1, P), ("wait", "r1", 10), ("wait", "r2", 10), ("update", [A], 1, P),
        ("expect", {"r1": A, "r2": "waiting"}), ("update", [A, B], 1, P), ("expect", {"r2": B}),
    ], id="new-pod-wakes-parked-callers-up-to-its-capacity"),
    pytest.param([
        ("update", [A], 1, P), ("try", A), ("wait", "r2", 10), ("wait", "r3", 10),
        ("update", [A], 1, S), ("expect", {"r2": A, "r3": A}),
        ("stats", dict(in_flight=3, waiting=0)), ("try", A),
    ], id="flip-to-serve-sends-every-parked-caller-on"),
    pytest.param([
        ("update", [A, B], 1, S), ("try", A), ("try", B), ("try", A), ("try", B),
        ("update", [A, B], 1, P), ("try", None), ("wait", "r5", 10), ("release", A),
        ("expect", {"r5": "waiting"}), ("release", A), ("expect", {"r5": A}),
    ], id="serve-overflows-to-least-loaded-then-proxy-respects-cc"),
    pytest.param([
        ("update", [], 1, S), ("try", None), ("wait", "r1", 10), ("update", [A], 1, S),
        ("expect", {"r1": A}),
    ], id="serve-without-pods-parks-like-proxy"),
    pytest.param([
        ("update", [A, B], 1, P), ("try", A), ("update", [B], 1, P), ("try", B), ("try", None),
        ("stats", dict(pods=1, in_flight=2)), ("release", A), ("stats", dict(in_flight=1)),
    ], id="removed-pod-gets-nothing-new-its-requests-finish"),
    pytest.param([
        ("update", [A], 1, P), ("try", A), ("update", [], 1, P), ("update", [A], 1, P),
        ("try", None), ("release", A), ("try", A),
    ], id="pod-back-while-busy-keeps-its-count"),
    pytest.param([
        ("update", [A, B], 1, P), ("try", A), ("try", B), ("update", [A, B], 2, P),
        ("stats", dict(capacity=4)), ("try", A), ("try", B), ("try", None),
    ], id="cc-change-resizes-every-pod"),
    pytest.param([
        ("update", [A, B, C], 4, P), ("try", A), ("try", B), ("try", C), ("try", A),
    ], id="cc4-round-robin-numeric-port-order"),
]


@pytest.mark.parametrize("steps", CASES)
async def test_throttler_steps(clock, steps):
    throttler = Throttler(KEY, clock, queue_depth=2, rng=random.Random(0))
    held: list = []
    tasks: dict[str, asyncio.Task] = {}
    for i, step in enumerate(steps):
        op, *args = step
        where = f"step {i} {step}"
        if op == "update":
            throttler.update(*args)
        elif op == "try":
            tracker = throttler.try_reserve()
            assert (tracker and tracker.pod) == args[0], where
            if tracker:
                held.append(tracker)
        elif op == "wait":
            name, timeout_s = args
            tasks[name] = asyncio.ensure_future(throttler.wait_reserve(clock.now() + timeout_s))
            await asyncio.sleep(0)  # let it park before the next step
        elif op == "release":
            tracker = next(t for t in held if t.pod == args[0])
            held.remove(tracker)
            throttler.release(tracker)
        elif op == "cancel":
            tasks[args[0]].cancel()
        elif op == "advance":
            await clock.advance(args[0])
        elif op == "expect":
            await asyncio.sleep(0)
            for name, want in args[0].items():
                task = tasks[name]
                if want == "waiting":
                    assert not task.done(), where
                elif isinstance(want, str):
                    assert task.done() and type(task.exception()).__name__ == want, where
                else:
                    assert task.done() and task.result().pod == want, where
                    held.append(task.result())
                    del tasks[name]
        elif op == "stats":
            await asyncio.sleep(0)
            stats = throttler.stats()
            for field, want in args[0].items():
                assert getattr(stats, field) == want, f"{where}: {field}"
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_close_fails_parked_callers_and_later_waits(clock):
    throttler = Throttler(KEY, clock)
    waiter = asyncio.ensure_future(throttler.wait_reserve(None))
    await asyncio.sleep(0)
    throttler.close()
    with pytest.raises(RevisionGoneError, match="revision removed"):
        await waiter
    with pytest.raises(RevisionGoneError):
        await throttler.wait_reserve(None)
    assert throttler.stats().waiting == 0


async def test_handover_racing_cancellation_gives_the_slot_back(clock):
    throttler = Throttler(KEY, clock)
    throttler.update([A], 1, Mode.PROXY)
    first = throttler.try_reserve()
    waiter = asyncio.ensure_future(throttler.wait_reserve(None))
    await asyncio.sleep(0)
    throttler.release(first)  # hands A to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs again
    await asyncio.gather(waiter, return_exceptions=True)
    assert throttler.stats().in_flight == 0
    assert throttler.try_reserve().pod == A


def test_release_more_than_reserved_is_an_error(clock):
    throttler = Throttler(KEY, clock)
    throttler.update([A], 1, Mode.PROXY)
    tracker = throttler.try_reserve()
    throttler.release(tracker)
    with pytest.raises(RuntimeError, match="more often"):
        throttler.release(tracker)


def test_expired_deadline_refuses_at_once(clock):
    throttler = Throttler(KEY, clock)

    async def wait():
        return await throttler.wait_reserve(clock.now() - 1)

    with pytest.raises(TimeoutError):
        asyncio.run(wait())
