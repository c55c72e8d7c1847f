"""The queue-proxy breaker: admission table, FIFO hand-off, cancellation, capacity changes."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.breaker import (
    QUEUE_FULL_REASON,
    Admission,
    Breaker,
    BreakerStats,
    QueueFullError,
    new_queue_proxy_breaker,
)

ADMISSION_CASES = [
    # (capacity, queue_depth, executing to take, waiting to park, expected decision)
    pytest.param(1, 10, 0, 0, Admission.ADMIT, id="idle-admits"),
    pytest.param(2, 20, 1, 0, Admission.ADMIT, id="one-free-slot-admits"),
    pytest.param(2, 20, 2, 0, Admission.ENQUEUE, id="slots-full-enqueues"),
    pytest.param(2, 20, 2, 19, Admission.ENQUEUE, id="last-queue-place-enqueues"),
    pytest.param(2, 20, 2, 20, Admission.REJECT, id="11xcc-admitted-next-rejected"),
    pytest.param(3, 0, 3, 0, Admission.REJECT, id="no-queue-rejects-when-busy"),
    pytest.param(0, 5, 0, 0, Admission.ENQUEUE, id="zero-capacity-queues"),
    pytest.param(0, 0, 0, 0, Admission.REJECT, id="zero-everything-rejects"),
]


@pytest.mark.parametrize(("capacity", "depth", "executing", "waiting", "want"), ADMISSION_CASES)
async def test_admission_decision(capacity, depth, executing, waiting, want):
    breaker = Breaker(capacity, depth)
    for _ in range(executing):
        assert breaker.try_acquire()
    parked = [asyncio.create_task(breaker.wait_acquire()) for _ in range(waiting)]
    await asyncio.sleep(0)
    assert breaker.stats() == BreakerStats(executing, waiting, capacity, depth)
    assert breaker.decide() is want
    assert breaker.try_acquire() is (want is Admission.ADMIT)
    for task in parked:
        task.cancel()
    await asyncio.gather(*parked, return_exceptions=True)


FACTORY_CASES = [
    pytest.param(0, None, id="cc-0-means-no-breaker"),
    pytest.param(1, BreakerStats(0, 0, 1, 10), id="cc-1"),
    pytest.param(10, BreakerStats(0, 0, 10, 100), id="cc-10"),
]


@pytest.mark.parametrize(("cc", "want"), FACTORY_CASES)
def test_queue_proxy_breaker_sizes_queue_at_ten_times_cc(cc, want):
    breaker = new_queue_proxy_breaker(cc)
    assert (breaker.stats() if breaker else None) == want


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        Breaker(bad, 1)
    with pytest.raises(ValueError):
        Breaker(1, bad)


def test_release_without_acquire_is_a_bug():
    with pytest.raises(RuntimeError):
        Breaker(1, 1).release()


async def test_full_queue_answers_503_with_reason():
    breaker = new_queue_proxy_breaker(1)
    assert breaker is not None
    assert breaker.try_acquire()
    parked = [asyncio.create_task(breaker.wait_acquire()) for _ in range(10)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError) as exc:
        await breaker.wait_acquire()
    assert (exc.value.status, exc.value.reason, str(exc.value)) == (503, QUEUE_FULL_REASON, QUEUE_FULL_REASON)
    assert breaker.stats().in_flight == 11
    for task in parked:
        task.cancel()
    await asyncio.gather(*parked, return_exceptions=True)
    assert breaker.stats() == BreakerStats(1, 0, 1, 10)


async def test_release_hands_slots_to_waiters_in_arrival_order():
    breaker = Breaker(1, 10)
    assert breaker.try_acquire()
    order: list[int] = []

    async def worker(i: int) -> None:
        await breaker.wait_acquire()
        order.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert breaker.stats().waiting == 5
    for expected_len in range(1, 6):
        breaker.release()
        # Exactly one waiter wakes per release: no thundering herd.
        assert breaker.stats().executing == 1
        await asyncio.sleep(0)
        assert len(order) == expected_len
    assert order == [0, 1, 2, 3, 4]
    breaker.release()
    assert breaker.stats() == BreakerStats(0, 0, 1, 10)
    await asyncio.gather(*tasks)


async def test_try_acquire_does_not_jump_the_queue():
    breaker = Breaker(1, 1)
    assert breaker.try_acquire()
    waiter = asyncio.create_task(breaker.wait_acquire())
    await asyncio.sleep(0)
    breaker.release()  # the slot goes to the waiter, not to the next try_acquire
    assert not breaker.try_acquire()
    await waiter
    breaker.release()
    assert breaker.try_acquire()


async def test_cancelled_waiter_leaves_queue_without_leaking_a_slot():
    breaker = Breaker(1, 5)
    assert breaker.try_acquire()
    first = asyncio.create_task(breaker.wait_acquire())
    second = asyncio.create_task(breaker.wait_acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert breaker.stats() == BreakerStats(1, 1, 1, 5)
    breaker.release()
    await asyncio.wait_for(second, 1)  # the slot skipped the cancelled waiter
    breaker.release()
    assert breaker.stats() == BreakerStats(0, 0, 1, 5)


async def test_waiter_cancelled_after_being_handed_a_slot_passes_it_on():
    breaker = Breaker(1, 5)
    assert breaker.try_acquire()
    first = asyncio.create_task(breaker.wait_acquire())
    second = asyncio.create_task(breaker.wait_acquire())
    await asyncio.sleep(0)
    breaker.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert breaker.stats() == BreakerStats(1, 0, 1, 5)
    breaker.release()
    assert breaker.stats() == BreakerStats(0, 0, 1, 5)


async def test_release_racing_a_cancellation_does_not_strand_a_later_arrival():
    breaker = Breaker(1, 5)
    assert breaker.try_acquire()
    stale = asyncio.create_task(breaker.wait_acquire())
    await asyncio.sleep(0)
    stale.cancel()  # its future is cancelled, its task has not run yet
    breaker.release()  # skips the cancelled future: the slot becomes free
    late = asyncio.create_task(breaker.wait_acquire())  # queues behind the stale count
    with pytest.raises(asyncio.CancelledError):
        await stale
    await asyncio.wait_for(late, 1)
    assert breaker.stats() == BreakerStats(1, 0, 1, 5)


async def test_timeout_while_waiting_frees_the_queue_place():
    breaker = Breaker(1, 1)
    assert breaker.try_acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await breaker.wait_acquire()
    assert breaker.stats() == BreakerStats(1, 0, 1, 1)
    assert breaker.decide() is Admission.ENQUEUE


async def test_growing_capacity_wakes_waiters_into_new_slots():
    breaker = Breaker(1, 10)
    assert breaker.try_acquire()
    tasks = [asyncio.create_task(breaker.wait_acquire()) for _ in range(4)]
    await asyncio.sleep(0)
    breaker.set_capacity(3)
    assert breaker.stats() == BreakerStats(3, 2, 3, 10)
    await asyncio.sleep(0)
    assert [t.done() for t in tasks] == [True, True, False, False]
    for task in tasks[2:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_shrinking_capacity_lets_holders_finish_before_handing_on():
    breaker = Breaker(3, 10)
    assert all(breaker.try_acquire() for _ in range(3))
    waiter = asyncio.create_task(breaker.wait_acquire())
    breaker.set_capacity(1)
    await asyncio.sleep(0)
    breaker.release()
    breaker.release()
    await asyncio.sleep(0)
    assert not waiter.done()
    assert breaker.stats() == BreakerStats(1, 1, 1, 10)
    breaker.release()  # now below the new capacity: the waiter gets the slot
    await asyncio.wait_for(waiter, 1)
    assert breaker.stats() == BreakerStats(1, 0, 1, 10)


async def test_queue_depth_change_applies_to_next_arrival():
    breaker = Breaker(1, 0)
    assert breaker.try_acquire()
    assert breaker.decide() is Admission.REJECT
    breaker.set_capacity(1, queue_depth=2)
    assert breaker.decide() is Admission.ENQUEUE


PARK_CASES = [
    # (capacity, queue_depth, slots taken first, futures parked first, expected outcome)
    pytest.param(1, 1, 0, 0, "resolved", id="free-slot-resolves-at-once"),
    pytest.param(1, 1, 1, 0, "parked", id="busy-parks"),
    pytest.param(1, 1, 1, 1, "refused", id="full-queue-refuses"),
    pytest.param(2, 0, 2, 0, "refused", id="no-queue-refuses"),
]


@pytest.mark.parametrize(("capacity", "depth", "taken", "parked", "want"), PARK_CASES)
async def test_try_park_resolves_parks_or_refuses(capacity, depth, taken, parked, want):
    breaker = Breaker(capacity, depth)
    for _ in range(taken):
        assert breaker.try_acquire()
    earlier = [breaker.try_park() for _ in range(parked)]
    fut = breaker.try_park("grant")
    got = "refused" if fut is None else "resolved" if fut.done() else "parked"
    assert got == want
    if want == "resolved":
        assert fut.result() == "grant" and breaker.stats().executing == taken + 1
    if want == "parked":
        assert breaker.stats().waiting == parked + 1
    for waiter in [*earlier, fut]:
        if waiter is not None:
            waiter.cancel()


async def test_release_resolves_parked_futures_with_their_grant_in_arrival_order():
    breaker = Breaker(1, 10)
    assert breaker.try_acquire()
    futures = [breaker.try_park(i) for i in range(3)]
    waiter = asyncio.create_task(breaker.wait_acquire())  # the coroutine form queues too
    await asyncio.sleep(0)
    for i, fut in enumerate(futures):
        breaker.release()
        assert fut.result() == i and not any(f.done() for f in futures[i + 1:])
        assert breaker.stats().executing == 1
    breaker.release()
    await asyncio.wait_for(waiter, 1)
    breaker.release()
    assert breaker.stats() == BreakerStats(0, 0, 1, 10)


async def test_cancelled_parked_future_leaves_the_queue_without_a_task():
    breaker = Breaker(1, 2)
    assert breaker.try_acquire()
    gone, kept = breaker.try_park("a"), breaker.try_park("b")
    assert breaker.decide() is Admission.REJECT
    gone.cancel()
    await asyncio.sleep(0)  # its done callback counts it out
    assert breaker.stats() == BreakerStats(1, 1, 1, 2)
    assert breaker.decide() is Admission.ENQUEUE
    breaker.release()
    assert kept.result() == "b"  # the slot skipped the cancelled future
    breaker.release()
    assert breaker.stats() == BreakerStats(0, 0, 1, 2)


async def test_release_before_a_cancelled_future_is_counted_out_strands_nobody():
    breaker = Breaker(1, 5)
    assert breaker.try_acquire()
    stale = breaker.try_park()
    stale.cancel()  # its callback has not run: `waiting` still counts it
    breaker.release()  # skips it; the slot is free but the count is stale
    late = breaker.try_park("late")  # parks behind the stale count
    assert not late.done()
    await asyncio.sleep(0)  # the stale future's callback fills the free slot
    assert late.result() == "late"
    assert breaker.stats() == BreakerStats(1, 0, 1, 5)
