"""first_of: the winner's result or error, losers cancelled and awaited, nothing leaked."""

from __future__ import annotations

import asyncio
import gc

import pytest

from dataplane import first_of

# How the racers reach first_of: as coroutines (first_of makes the tasks), as tasks the
# caller kept, or as bare futures the caller resolves.
KINDS = ["coroutine", "task", "future"]


class Racer:
    """One contestant: finishes with `outcome` (a value, or an exception to raise) on cue."""

    def __init__(self, outcome: object, *, fail_on_cancel: BaseException | None = None) -> None:
        self.outcome = outcome
        self.fail_on_cancel = fail_on_cancel
        self.go = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = False
        self.cleaned_up = False
        self.future: asyncio.Future[object] | None = None

    async def run(self) -> object:
        """Wait for the cue; on cancellation take one more loop step to clean up, then re-raise."""
        self.started.set()
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            await asyncio.sleep(0)  # cleanup that itself waits: first_of must await it
            self.cleaned_up = True
            if self.fail_on_cancel is not None:
                raise self.fail_on_cancel from None
            raise
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def awaitable(self, kind: str):
        """What the caller hands to first_of for this racer."""
        if kind == "coroutine":
            return self.run()
        if kind == "task":
            self.future = asyncio.ensure_future(self.run())
        else:
            self.future = asyncio.get_running_loop().create_future()
        return self.future

    def finish(self, kind: str) -> None:
        """Let the racer finish (a bare future is resolved at once)."""
        self.go.set()
        if kind == "future":
            assert self.future is not None
            if isinstance(self.outcome, BaseException):
                self.future.set_exception(self.outcome)
            else:
                self.future.set_result(self.outcome)

    def was_cancelled(self, kind: str) -> bool:
        """Cancelled and, for a coroutine or task, cleaned up before first_of returned."""
        if kind == "future":
            assert self.future is not None
            return self.future.cancelled()
        return self.cancelled and self.cleaned_up


def _boom() -> ValueError:
    return ValueError("boom")


RACES = [
    # (outcome of each racer, which finish before the race, expected result or error type)
    pytest.param(["a", "b", "c"], {1}, "b", id="the-one-that-finishes-wins"),
    pytest.param(["a", None], {1}, None, id="a-None-result-is-returned-as-is"),
    pytest.param(["a", "b"], {0, 1}, "a", id="a-tie-goes-to-the-first-in-argument-order"),
    pytest.param(["a", "b"], {1, 0}, "a", id="argument-order-not-finish-order-breaks-ties"),
    pytest.param(["a", _boom()], {1}, ValueError, id="the-winners-error-is-raised"),
    pytest.param(["a", _boom()], {0, 1}, ValueError, id="an-error-beats-a-result-at-the-same-moment"),
    pytest.param([_boom()], {0}, ValueError, id="a-single-failing-awaitable"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("outcomes", "finishing", "expected"), RACES)
async def test_race_answers_like_its_winner_and_cancels_the_rest(kind, outcomes, finishing, expected):
    racers = [Racer(o) for o in outcomes]
    aws = [r.awaitable(kind) for r in racers]
    for i in finishing:
        racers[i].finish(kind)
    async with asyncio.timeout(5):
        if isinstance(expected, type) and issubclass(expected, BaseException):
            with pytest.raises(expected):
                await first_of(*aws)
        else:
            assert await first_of(*aws) == expected
    for i, racer in enumerate(racers):
        assert racer.was_cancelled(kind) == (i not in finishing), f"racer {i}"
        if racer.future is not None:  # what the caller kept stays readable
            assert racer.future.done()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_further_errors_are_noted_on_the_raised_one():
    first, second = ValueError("first"), KeyError("second")
    racers = [Racer(first), Racer(second)]
    aws = [r.awaitable("coroutine") for r in racers]
    for r in racers:
        r.finish("coroutine")
    async with asyncio.timeout(5):
        with pytest.raises(ValueError) as caught:
            await first_of(*aws)
    assert caught.value is first
    assert any("KeyError('second')" in note for note in caught.value.__notes__)


async def test_a_loser_failing_while_cancelled_is_raised():
    cleanup_error = OSError("cleanup failed")
    winner, loser = Racer("won"), Racer("never", fail_on_cancel=cleanup_error)
    aws = [winner.awaitable("coroutine"), loser.awaitable("coroutine")]
    winner.finish("coroutine")
    async with asyncio.timeout(5):
        with pytest.raises(OSError) as caught:
            await first_of(*aws)
    assert caught.value is cleanup_error
    assert loser.cancelled and loser.cleaned_up


@pytest.mark.parametrize("kind", ["coroutine", "task"])
async def test_cancelling_the_caller_cancels_and_awaits_every_child(kind):
    racers = [Racer("a"), Racer("b")]
    race = asyncio.ensure_future(first_of(*(r.awaitable(kind) for r in racers)))
    async with asyncio.timeout(5):
        for r in racers:
            await r.started.wait()
        race.cancel()
        with pytest.raises(asyncio.CancelledError):
            await race
    assert all(r.cancelled and r.cleaned_up for r in racers)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_second_cancel_during_cleanup_still_waits_for_every_child():
    # A child whose cancellation cleanup takes a while (it awaits): cancelling the
    # caller again meanwhile (a timeout, a second SIGTERM) must not leave it running.
    release = asyncio.Event()
    finished_cleanup = asyncio.Event()
    started = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()
            finished_cleanup.set()
            raise

    race = asyncio.ensure_future(first_of(slow_to_stop(), asyncio.Event().wait()))
    async with asyncio.timeout(5):
        await started.wait()
        race.cancel()
        await asyncio.sleep(0.01)
        race.cancel()  # the second cancel lands while the child is still cleaning up
        await asyncio.sleep(0.01)
        assert not race.done()  # still waiting for the child
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await race
    assert finished_cleanup.is_set()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_errors_read_by_first_of_are_never_reported_as_unretrieved():
    seen: list[dict] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    try:
        winner, loser = Racer(_boom()), Racer("x", fail_on_cancel=KeyError("late"))
        aws = [winner.awaitable("coroutine"), loser.awaitable("coroutine")]
        winner.finish("coroutine")
        async with asyncio.timeout(5):
            with pytest.raises(ValueError):
                await first_of(*aws)
        del aws
        gc.collect()  # an unread task error is reported when the task is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert seen == []


async def test_no_awaitables_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        await first_of()


async def test_a_non_awaitable_argument_leaves_no_task_behind():
    racer = Racer("a")
    async with asyncio.timeout(5):
        with pytest.raises(TypeError):
            await first_of(racer.run(), 42)  # type: ignore[arg-type]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_cancelled_gather_is_a_loser_not_an_error():
    # gather() cancelled ends with CancelledError as its exception, not as cancelled.
    slow, fast = Racer("slow"), Racer("fast")
    fast.finish("coroutine")
    async with asyncio.timeout(5):
        assert await first_of(asyncio.gather(slow.run()), fast.run()) == "fast"
    assert slow.cancelled and slow.cleaned_up
