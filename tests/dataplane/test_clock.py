"""FakeClock wakes sleepers in deadline order and only when advanced."""

from __future__ import annotations

import asyncio

from dataplane import FakeClock


async def test_sleepers_wake_in_deadline_order_when_advanced():
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper("late", 5)), asyncio.create_task(sleeper("early", 2))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    await clock.advance(1)
    assert woke == []
    await clock.advance(10)
    await asyncio.gather(*tasks)
    assert woke == [("early", 1002.0), ("late", 1005.0)]
    assert clock.now() == 1011.0


def test_starts_at_one_thousand():
    assert FakeClock().now() == 1000.0
