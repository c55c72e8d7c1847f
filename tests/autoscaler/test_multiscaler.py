"""The multiscaler: when decisions are reported, pokes, pushed stats, and the real loops."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from autoscaler.config import AutoscalerConfig, ScalingSpec, resolve_spec, resolve_windows
from autoscaler.decider import Decision
from autoscaler.multiscaler import Multiscaler
from autoscaler.scraper import PodScraper, ReadyPod
from dataplane.clock import FakeClock
from dataplane.stat import PROTOBUF_CONTENT_TYPE, Stat
from dataplane.types import PodAddress, RevisionKey

KEY = RevisionKey("default", "hello-00001")
OTHER = RevisionKey("default", "other-00001")
# CC 10 at 70% utilization: total 10, target 7 (reference 1.4); TBC 211 (the default).
SPEC = ScalingSpec(target_value=7.0, total_value=10.0, stable_window=60.0)


class Recorder:
    """An on_decision callback that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[RevisionKey, Decision]] = []
        self.changed = asyncio.Event()

    def __call__(self, key: RevisionKey, decision: Decision) -> None:
        self.calls.append((key, decision))
        self.changed.set()

    def desired(self, key: RevisionKey = KEY) -> list[int]:
        return [d.desired_pods for k, d in self.calls if k == key]


def pods(n: int) -> list[ReadyPod]:
    return [ReadyPod(PodAddress(f"10.0.0.{i}", 8012, 9090), started_at=0.0) for i in range(n)]


def activator(concurrency: float, timestamp: int = 0) -> Stat:
    return Stat("activator-0", concurrency, 0.0, concurrency, 0.0, 0.0, timestamp)


def test_poke_at_desired_zero_decides_one_at_once(clock: FakeClock) -> None:
    rec = Recorder()
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    ms.ingest(KEY, activator(0.0), clock.now())      # an idle second: no poke
    ms.tick()
    assert rec.desired() == [0]
    clock.set(clock.now() + 1.0)
    ms.ingest(KEY, activator(1.0), clock.now())      # the first request arrives
    assert rec.desired() == [0, 1]
    assert ms.stats().ticks == 1 and ms.stats().pokes == 1
    assert ms.decision(KEY).desired_pods == 1


def test_cold_start_poke_before_any_decision(clock: FakeClock) -> None:
    rec = Recorder()
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    assert ms.decision(KEY).desired_pods == -1
    ms.ingest(KEY, activator(1.0), clock.now())
    assert rec.desired() == [1]


# (stat concurrency pushed, current desired) -> whether the stat pokes
POKE_RULE_CASES = [
    pytest.param(0.0, "zero", False, id="no-concurrency-no-poke"),
    pytest.param(2.0, "zero", True, id="concurrency-at-zero-pokes"),
    pytest.param(2.0, "undecided", True, id="concurrency-before-first-decision-pokes"),
    pytest.param(2.0, "one", False, id="already-scaled-no-poke"),
]


@pytest.mark.parametrize(("concurrency", "state", "pokes"), POKE_RULE_CASES)
def test_ingest_pokes_only_a_revision_at_zero(clock, concurrency, state, pokes) -> None:
    rec = Recorder()
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    if state != "undecided":
        ms.ingest(KEY, activator(0.0 if state == "zero" else 7.0), clock.now())
        ms.tick()
        clock.set(clock.now() + 1.0)
    before = ms.stats().pokes
    ms.ingest(KEY, activator(concurrency), clock.now())
    assert ms.stats().pokes - before == (1 if pokes else 0)


# One revision, windows of 1 s so each tick sees that second's load; no panic, no
# scale-down limit. target 10, total 10, TBC 20: EBC = ready*10 - 20 - load.
NEWS_SPEC = ScalingSpec(target_value=10.0, total_value=10.0, target_burst_capacity=20.0,
                        stable_window=1.0, panic_threshold=1000.0, max_scale_down_rate=1e9)
# (seconds, ready pods, load pushed that second, reported (desired, EBC) or None)
NEWS_STEPS = [
    (0, 2, 0.0, (0, 0)),       # first valid decision is always reported
    (2, 2, 0.0, None),         # nothing changed
    (4, 2, 5.0, (1, -5)),      # desired changed (reported by the poke)
    (6, 2, 8.0, None),         # EBC moved but kept its sign
    (8, 3, 9.0, (1, 1)),       # EBC turned non-negative
    (10, 3, 10.0, None),       # EBC 0 is still non-negative
    (12, 2, 10.0, (1, -10)),   # EBC negative again
    (14, 2, 20.0, (2, -20)),   # desired changed
]


def test_decisions_reported_only_when_desired_or_ebc_sign_changes(clock) -> None:
    rec = Recorder()
    ready = [1]  # more than one ready pod at watch time would start the decider in panic
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, NEWS_SPEC, panic_window_s=1.0, pods=lambda: pods(ready[0]))
    start = clock.now()
    for t, n, load, want in NEWS_STEPS:
        clock.set(start + t)
        ready[0] = n
        before = len(rec.calls)
        ms.ingest(KEY, activator(load), clock.now())
        ms.tick()
        got = [(d.desired_pods, d.excess_burst_capacity) for _, d in rec.calls[before:]]
        assert got == ([want] if want else []), f"at t={t}s"


def test_no_data_with_a_scrape_target_decides_nothing(clock) -> None:
    rec = Recorder()
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: pods(1))
    ms.tick()
    assert rec.calls == [] and ms.decision(KEY).desired_pods == -1
    assert ms.poke(KEY) is None


def test_activator_only_revision_reads_silence_as_zero(clock) -> None:
    rec = Recorder()
    spec = ScalingSpec(target_value=7.0, total_value=10.0, target_burst_capacity=-1.0)
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, spec, panic_window_s=6.0, pods=lambda: [])
    ms.tick()
    assert [(d.desired_pods, d.excess_burst_capacity) for _, d in rec.calls] == [(0, -1)]


def test_stamped_stat_older_than_the_window_is_not_data(clock) -> None:
    rec = Recorder()
    wall = 1_700_000_000.5
    ms = Multiscaler(clock=clock, on_decision=rec, wall_clock=lambda: wall)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    ms.ingest(KEY, activator(5.0, timestamp=int(wall) - 120), clock.now())
    assert rec.calls == []                           # poked, but no data: invalid tick
    ms.ingest(KEY, activator(5.0, timestamp=int(wall) - 3), clock.now())
    assert rec.desired() == [1]


def test_forgotten_and_unknown_revisions_drop_stats(clock) -> None:
    rec = Recorder()
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    ms.forget(KEY)
    ms.ingest(KEY, activator(3.0), clock.now())
    ms.ingest(OTHER, activator(3.0), clock.now())
    ms.tick()
    assert rec.calls == [] and ms.stats().stats_unknown_revision == 2
    assert ms.decision(KEY) is None


def test_watch_twice_is_an_error_and_update_applies_the_spec(clock) -> None:
    ms = Multiscaler(clock=clock, on_decision=Recorder())
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    with pytest.raises(ValueError, match="already watched"):
        ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    ms.update(KEY, ScalingSpec(metric="rps", target_value=2.0), panic_window_s=6.0)
    ms.ingest(KEY, Stat("activator-0", 0.0, 0.0, 9.0, 0.0), clock.now())
    ms.tick()
    assert ms.decision(KEY).desired_pods == 5         # ceil(9 rps / 2 per pod)
    with pytest.raises(KeyError):
        ms.update(OTHER, SPEC, panic_window_s=6.0)


def test_a_failing_callback_or_pods_source_does_not_stop_other_revisions(clock) -> None:
    calls: list[RevisionKey] = []

    def on_decision(key: RevisionKey, decision: Decision) -> None:
        calls.append(key)
        if key == KEY:
            raise RuntimeError("scaler down")

    def broken_pods() -> list[ReadyPod]:
        raise OSError("lister unavailable")

    ms = Multiscaler(clock=clock, on_decision=on_decision)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    ms.watch(OTHER, SPEC, panic_window_s=6.0, pods=lambda: [])
    broken = RevisionKey("default", "broken-00001")
    ms.watch(broken, SPEC, panic_window_s=6.0, pods=broken_pods)
    for key in (KEY, OTHER, broken):
        ms.ingest(key, activator(0.0), clock.now())
    ms.tick()
    assert calls == [KEY, OTHER]                       # broken: unknown ready count, invalid
    assert ms.stats().errors >= 3                      # watch + tick read failures, callback


# --- the loops --------------------------------------------------------------------------


class NotifyingScraper:
    """Wraps a scraper and sets an event after each scrape, so a test can wait for one."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.done = asyncio.Event()
        self.count = 0

    async def scrape(self, pods, *, now, stable_window_s):
        try:
            return await self.inner.scrape(pods, now=now, stable_window_s=stable_window_s)
        finally:
            self.count += 1
            self.done.set()


class FixedScraper:
    """An in-memory scraper returning one revision-wide stat."""

    def __init__(self, stat: Stat) -> None:
        self.stat = stat

    async def scrape(self, pods, *, now, stable_window_s):
        return self.stat if pods else None


async def wait_armed(clock: FakeClock, sleepers: int) -> None:
    """Let the loop's tasks run until they all wait on the fake clock."""
    while clock.sleepers < sleepers:
        await asyncio.sleep(0)


async def step_seconds(clock: FakeClock, scraper: NotifyingScraper, seconds: int) -> None:
    """Advance one second at a time, waiting for that second's scrape to finish."""
    for _ in range(seconds):
        scraper.done.clear()
        await clock.advance(1.0)
        await scraper.done.wait()


async def test_run_scrapes_every_second_and_ticks_every_two(clock) -> None:
    rec = Recorder()
    scraper = NotifyingScraper(FixedScraper(Stat("service-scraper", 14.0)))
    ms = Multiscaler(clock=clock, on_decision=rec, scraper=scraper)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: pods(1))
    async with asyncio.timeout(10):
        task = asyncio.create_task(ms.run())
        await wait_armed(clock, 2)
        await step_seconds(clock, scraper, 6)
        assert (scraper.count, ms.stats().ticks) == (6, 3)
        assert rec.desired() == [2]                    # ceil(14 / 7), reported once
        ms.forget(KEY)
        await clock.advance(1.0)
        assert scraper.count == 6                      # its scrape loop is gone
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_activator_only_revision_is_never_scraped(clock) -> None:
    scraper = NotifyingScraper(FixedScraper(Stat("service-scraper", 14.0)))
    spec = ScalingSpec(target_value=7.0, total_value=10.0, target_burst_capacity=-1.0)
    ms = Multiscaler(clock=clock, on_decision=Recorder(), scraper=scraper)
    ms.watch(KEY, spec, panic_window_s=6.0, pods=lambda: pods(2))
    async with asyncio.timeout(10):
        task = asyncio.create_task(ms.run())
        await wait_armed(clock, 2)
        for _ in range(3):
            await clock.advance(1.0)
        assert scraper.count == 0 and ms.stats().ticks == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@asynccontextmanager
async def stats_pods(stat: Stat, n: int) -> AsyncIterator[list[ReadyPod]]:
    """n loopback queue-proxy stats endpoints, each serving `stat` at /metrics."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=stat.to_protobuf(), content_type=PROTOBUF_CONTENT_TYPE)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    ready = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(runner, sock).start()
            ready.append(ReadyPod(PodAddress("127.0.0.1", 1, sock.getsockname()[1]), 0.0))
        yield ready
    finally:
        await runner.cleanup()


@pytest.mark.integration
async def test_real_scrapes_of_three_pods_at_21_give_nine_pods(clock) -> None:
    rec = Recorder()
    config = AutoscalerConfig()
    spec = resolve_spec(config, container_concurrency=10)      # target 7, total 10, TBC 211
    assert (spec.target_value, spec.total_value) == (pytest.approx(7.0), 10.0)
    _, panic_window_s = resolve_windows(config)
    load = Stat("pod", average_concurrent_requests=21.0, request_count=30.0, process_uptime=90.0)
    async with asyncio.timeout(20), stats_pods(load, 3) as ready, aiohttp.ClientSession() as http:
        scraper = NotifyingScraper(PodScraper(http))
        ms = Multiscaler(clock=clock, on_decision=rec, scraper=scraper)
        ms.watch(KEY, spec, panic_window_s=panic_window_s, pods=lambda: ready,
                 service_name="hello", configuration_name="hello")
        task = asyncio.create_task(ms.run())
        try:
            await wait_armed(clock, 2)
            await step_seconds(clock, scraper, 65)       # more than a full stable window
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    # 3 pods x 21 = 63 revision-wide; ceil(63 / 7) = 9. EBC = 3*10 - 211 - 63.
    assert [(d.desired_pods, d.excess_burst_capacity) for _, d in rec.calls] == [(9, -244)]
    assert ms.stats().scrape_errors == 0 and scraper.count == 65
    snap = ms.snapshots()[0]
    assert (snap.stable_value, snap.panic_value, snap.ready_pods) == (63.0, 63.0, 3)


def test_non_finite_pushed_stat_is_refused_and_ticks_go_on(clock) -> None:
    rec = Recorder()
    ms = Multiscaler(clock=clock, on_decision=rec)
    ms.watch(KEY, SPEC, panic_window_s=6.0, pods=lambda: [])
    with pytest.raises(ValueError, match="not finite"):
        ms.ingest(KEY, activator(float("nan")), clock.now())
    ms.ingest(KEY, activator(0.0), clock.now())
    ms.tick()
    assert rec.desired() == [0]
