"""Small asyncio building blocks shared by the daemons: `first_of`, a race that cleans up.

`asyncio.wait(..., return_when=FIRST_COMPLETED)` says which awaitable is done but leaves
the others running and the winner's error unread. Each caller then had to cancel the
losers, await them (so none outlives the caller or dies with "exception was never
retrieved") and decide what to do with errors; `first_of` does that once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["first_of"]

T = TypeVar("T")

# Theory of operation.
#
#   1. Each awaitable becomes a future (`asyncio.ensure_future`): a coroutine gets a task,
#      a future or task passed in is used as it is, so a caller that kept a reference can
#      read it afterwards (which one finished, with what).
#   2. Wait until at least one is done.
#   3. Cancel every other one and await them all, through further cancellations of the
#      caller too. When `first_of` returns or raises, nothing it started is still
#      running and every error has been read.
#   4. Answer like the winner: its result, or its error raised.
#
# Ties and errors: when several finish in the same loop step, the winner is the first
# in argument order, except that an error beats a result, so a failure is never hidden
# behind a success that happened at the same moment. A loser that fails while being
# cancelled (its cleanup raised) is an error too. Only the first error is raised; any
# others are named in a note on it (`add_note`) rather than dropped.
#
# Cancellation: cancelling the task that runs `first_of` cancels every child, awaits
# them, and lets CancelledError through; the children's errors then go unreported, as
# the caller asked to stop caring.
#
# Worked example: the queue-proxy's shutdown bound,
#     await first_of(server.wait_idle(), cut.wait(), asyncio.sleep(30.0))
# with one request in flight that completes at t=2 s: at t=2 `wait_idle()` is done,
# `cut.wait()` and the sleep are cancelled and awaited, and `first_of` returns None
# (wait_idle's result) at t=2. Had nothing finished, the sleep would win at t=30 the same
# way. A caller that must know who won looks at its own state (is the event set?) or at
# the futures it passed in.


async def first_of(*aws: Awaitable[T]) -> T:
    """Await the first of `aws` to finish; cancel and await the rest; return or raise as it did."""
    if not aws:
        raise ValueError("first_of() needs at least one awaitable")
    futures: list[asyncio.Future[T]] = []
    try:
        for aw in aws:
            futures.append(asyncio.ensure_future(aw))
        done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in futures:
            fut.cancel()  # a no-op on the ones already done
        await _settle(futures)
    winners = [f for f in futures if f in done]
    losers = [f for f in futures if f not in done]
    errors = [e for e in map(_error, (*winners, *losers)) if e is not None]
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"first_of: another awaitable also failed: {other!r}")
        raise first
    return winners[0].result()  # CancelledError if someone else cancelled a future passed in


async def _settle(futures: list[asyncio.Future[T]]) -> None:
    """Wait until every future is done, even through further cancellations of the caller.

    A second cancel (a timeout expiring, another SIGTERM) while the children run their
    cancellation cleanup must not let `first_of` leave them running: keep waiting, then
    let one CancelledError through. Every outcome is read, so none goes unretrieved.
    """
    cancelled = False
    pending = [f for f in futures if not f.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [f for f in pending if not f.done()]
    for fut in futures:
        if not fut.cancelled():
            fut.exception()  # marks it retrieved; the ones that matter are raised by the caller
    if cancelled:
        raise asyncio.CancelledError


def _error(fut: asyncio.Future[object]) -> BaseException | None:
    # A cancelled gather() ends with CancelledError set as its exception rather than in
    # the cancelled state: for a loser, that is the cancellation we asked for.
    if fut.cancelled():
        return None
    exc = fut.exception()
    return None if isinstance(exc, asyncio.CancelledError) else exc
