"""Waiting for processes to end, without polling: a pidfd turns readable when it does."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable


def open_pidfds(pids: Iterable[int]) -> list[int]:
    """A pidfd for each pid still present (reaped ones are skipped)."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass
    return fds


async def wait_pidfds(fds: list[int], timeout_s: float) -> None:
    """Until every pidfd's process has ended (zombies count as ended); closes the fds.

    Raises TimeoutError if one is still alive after `timeout_s`.
    """
    loop = asyncio.get_running_loop()
    futures = []
    for fd in fds:
        fut = loop.create_future()
        loop.add_reader(fd, lambda f=fut: f.done() or f.set_result(None))
        futures.append(fut)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*futures)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


async def wait_exits(pids: Iterable[int], timeout_s: float) -> None:
    """Until every process in `pids` has ended; TimeoutError otherwise."""
    await wait_pidfds(open_pidfds(pids), timeout_s)
