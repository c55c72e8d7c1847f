"""The work queue (dedup, one worker per key, re-queue) and the informer's list/watch
recovery (410 Gone relists, errors back off, server timeouts re-watch) on a fake stream."""

from __future__ import annotations

import asyncio

import pytest

from serving.kubernetes.client import ApiError
from serving.kubernetes.informer import Informer, WorkQueue, backoff_s


def obj(name: str, rv: str) -> dict:
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": rv}}


BACKOFF = [
    pytest.param(0, 0.0, id="no-failure-no-wait"),
    pytest.param(1, 0.5, id="first-failure-base"),
    pytest.param(3, 2.0, id="doubles"),
    pytest.param(7, 30.0, id="capped-at-30s"),
    pytest.param(500, 30.0, id="huge-count-no-overflow"),
]


@pytest.mark.parametrize(("failures", "wait"), BACKOFF)
def test_backoff_doubles_from_half_a_second_to_thirty(failures, wait):
    assert backoff_s(failures) == wait


QUEUE_STEPS = [
    pytest.param(["add a", "add a", "add b", "get a", "get b"], [], id="dedup-keeps-order"),
    pytest.param(["add a", "get a", "add a", "done a", "get a"], [], id="added-while-busy-requeued"),
    pytest.param(["add a", "get a", "done a"], ["idle"], id="done-without-add-is-idle"),
    pytest.param(["add a", "get a", "add a", "add b", "get b", "done a", "get a"], [],
                 id="busy-key-not-handed-twice"),
]


@pytest.mark.parametrize(("steps", "expect"), QUEUE_STEPS)
async def test_work_queue(steps, expect):
    queue = WorkQueue()
    for step in steps:
        op, key = step.split()
        if op == "add":
            queue.add(key)
        elif op == "done":
            queue.done(key)
        else:
            async with asyncio.timeout(1):
                assert await queue.get() == key
    if "idle" in expect:
        assert queue.is_idle()


async def test_work_queue_get_waits_for_add():
    queue = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.add("k")
    async with asyncio.timeout(1):
        assert await getter == "k"


class FakeSource:
    """Scripted lists and watch streams; a script item that is an exception is raised."""

    def __init__(self, lists, watches):
        self.lists = list(lists)
        self.watches = list(watches)
        self.watch_rvs: list[str] = []
        self.exhausted = asyncio.Event()

    async def list(self):
        item = self.lists.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def watch(self, rv):
        self.watch_rvs.append(rv)
        if not self.watches:
            self.exhausted.set()
            await asyncio.Event().wait()
        for event in self.watches.pop(0):
            if isinstance(event, Exception):
                raise event
            yield event


async def run_informer(source, clock):
    events: list[tuple[str, str]] = []
    informer = Informer(source, lambda t, o: events.append((t, o["metadata"]["name"])),
                        clock=clock, resync_s=1e9, name="test")
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(5):
            while not source.exhausted.is_set():
                if clock.sleepers:
                    await clock.advance(30)
                await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return informer, events


async def test_watch_gone_410_relists_and_reports_differences(clock):
    source = FakeSource(
        lists=[([obj("a", "1"), obj("b", "2")], "10"), ([obj("a", "12"), obj("c", "15")], "20")],
        watches=[[{"type": "MODIFIED", "object": obj("a", "12")},
                  {"type": "ERROR", "object": {"kind": "Status", "code": 410}}]])
    informer, events = await run_informer(source, clock)
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"),
                      ("DELETED", "b"), ("ADDED", "c")]
    assert source.watch_rvs == ["10", "20"]
    assert sorted(o["metadata"]["name"] for o in informer.items()) == ["a", "c"]
    assert informer.lists == 2


async def test_server_timeout_rewatches_from_last_version_without_listing(clock):
    source = FakeSource(
        lists=[([obj("a", "1")], "10")],
        watches=[[{"type": "BOOKMARK", "object": obj("", "14")}],
                 [{"type": "DELETED", "object": obj("a", "16")}]])
    informer, events = await run_informer(source, clock)
    assert source.watch_rvs == ["10", "14", "16"]
    assert events == [("ADDED", "a"), ("DELETED", "a")]
    assert informer.lists == 1 and list(informer.items()) == []


async def test_errors_back_off_then_relist(clock):
    source = FakeSource(
        lists=[ApiError(500, "InternalError"), ([obj("a", "1")], "10"), ([obj("a", "1")], "30")],
        watches=[[ConnectionResetError()]])
    start = clock.now()
    informer, events = await run_informer(source, clock)
    assert events == [("ADDED", "a")]  # the relist after the reset changed nothing
    assert source.watch_rvs == ["10", "30"]
    assert informer.lists == 2
    assert clock.now() > start  # it waited before each retry


async def test_resync_reports_every_cached_object_again(clock):
    events: list[tuple[str, str]] = []
    source = FakeSource(lists=[([obj("a", "1"), obj("b", "2")], "10")], watches=[])
    informer = Informer(source, lambda t, o: events.append((t, o["metadata"]["name"])),
                        clock=clock, resync_s=60)
    task = asyncio.create_task(informer.run())
    async with asyncio.timeout(5):
        await informer.synced.wait()
        while not clock.sleepers:
            await asyncio.sleep(0)
        await clock.advance(60)
        while len(events) < 4:
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(events[2:]) == [("SYNC", "a"), ("SYNC", "b")]
