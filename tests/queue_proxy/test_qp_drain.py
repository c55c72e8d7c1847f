"""The drain state machine and its timer shell, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.clock import FakeClock
from queue_proxy.drain import DrainPhase, Drainer, DrainState

async def armed(clock: FakeClock, timers: int) -> None:
    """Wait (bounded) until `timers` fake-clock sleeps are pending."""
    async with asyncio.timeout(1):
        while clock.sleepers < timers:
            await asyncio.sleep(0)


S, D, X = DrainPhase.SERVING, DrainPhase.DRAINING, DrainPhase.DRAINED

STATE_CASES = [
    # steps: (seconds from T0, action, expected phase after it)
    pytest.param([(0, "poll", S), (100, "request", S), (100, "poll", S)], id="serving-ignores-requests"),
    pytest.param([(0, "start", D), (29.9, "poll", D), (30, "poll", X)], id="quiet-period-ends-drain"),
    pytest.param([(0, "start", D), (10, "request", D), (25, "request", D), (54.9, "poll", D),
                  (55, "poll", X)], id="each-request-restarts-quiet-period"),
    pytest.param([(0, "start", D), (30, "request", X), (31, "poll", X)], id="drained-is-sticky"),
    pytest.param([(0, "start", D), (10, "start", D), (30, "poll", X)], id="second-start-does-not-extend"),
    pytest.param([(0, "start", D), (5, "reset", S), (40, "poll", S), (40, "start", D), (70, "poll", X)],
                 id="reset-then-new-drain"),
]


@pytest.mark.parametrize("steps", STATE_CASES)
def test_drain_state(steps):
    state = DrainState(30.0)
    for t, action, want in steps:
        now = 1_000.0 + t
        if action == "start":
            state.start(now)
        elif action == "request":
            state.request(now)
        elif action == "reset":
            state.reset()
        assert state.poll(now) is want, f"at t={t}s after {action}"


def test_negative_quiet_period_refused():
    with pytest.raises(ValueError):
        DrainState(-1)


async def test_drain_waits_for_quiet_period_moved_by_requests(clock: FakeClock):
    drainer = Drainer(clock, quiet_s=30)
    assert not drainer.is_draining
    task = asyncio.create_task(drainer.drain())
    await asyncio.sleep(0)
    assert drainer.is_draining and drainer.phase() is D
    await clock.advance(20)
    drainer.request_seen()  # deadline moves to t=50
    await clock.advance(20)
    assert not task.done()
    assert drainer.stats().waiters == 1
    await clock.advance(10)
    assert await asyncio.wait_for(task, 1) is True
    assert drainer.phase() is X and drainer.is_draining
    assert await drainer.wait_drained() is True  # already over: returns at once
    await drainer.aclose()


async def test_every_waiter_is_released_when_drained(clock: FakeClock):
    drainer = Drainer(clock, quiet_s=1)
    waiters = [asyncio.create_task(drainer.drain()) for _ in range(3)]
    await asyncio.sleep(0)
    await clock.advance(1)
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]


async def test_wait_drained_before_any_drain_is_a_bug(clock: FakeClock):
    with pytest.raises(RuntimeError):
        await Drainer(clock).wait_drained()


async def test_wait_for_drain_without_sigterm_resets_after_one_second(clock: FakeClock):
    drainer = Drainer(clock, quiet_s=30)
    terminating = asyncio.Event()
    task = asyncio.create_task(drainer.wait_for_drain(terminating))
    await armed(clock, 2)  # the quiet-period timer and the SIGTERM watchdog
    assert drainer.is_draining
    await clock.advance(1)
    assert await asyncio.wait_for(task, 1) is False
    assert not drainer.is_draining and drainer.phase() is S
    await drainer.aclose()


async def test_wait_for_drain_with_sigterm_drains_fully(clock: FakeClock):
    drainer = Drainer(clock, quiet_s=30)
    terminating = asyncio.Event()
    task = asyncio.create_task(drainer.wait_for_drain(terminating))
    await armed(clock, 2)  # the quiet-period timer and the SIGTERM watchdog
    terminating.set()  # the kubelet's SIGTERM arrives alongside the preStop hook
    await clock.advance(1)
    assert not task.done() and drainer.is_draining
    await clock.advance(29)
    assert await asyncio.wait_for(task, 1) is True
    await drainer.aclose()


async def test_short_drain_without_sigterm_is_still_undone(clock: FakeClock):
    drainer = Drainer(clock, quiet_s=0.5)
    task = asyncio.create_task(drainer.wait_for_drain(asyncio.Event()))
    await armed(clock, 2)
    await clock.advance(0.5)
    assert await asyncio.wait_for(task, 1) is True
    assert drainer.phase() is X
    await clock.advance(0.5)
    assert drainer.phase() is S  # the liveness restart must not leave the pod unready
    await drainer.aclose()


async def test_sigterm_drain_after_a_reset_starts_fresh(clock: FakeClock):
    drainer = Drainer(clock, quiet_s=30)
    drainer.start()
    drainer.reset()
    task = asyncio.create_task(drainer.drain())
    await asyncio.sleep(0)
    await clock.advance(29)
    assert not task.done()
    await clock.advance(1)
    assert await asyncio.wait_for(task, 1) is True
