"""Time-weighted in-flight accounting and the 1 s Stat reporter, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.clock import FakeClock
from dataplane.stat import Stat
from dataplane.stats import (
    RequestStats,
    RequestStatsReport,
    StatReporter,
    is_proxied,
    stat_from_report,
)

T0 = 1_000.0

ACCOUNTING_CASES = [
    # events: (seconds from T0, "in"/"out"/"report", proxied); expected reports in order
    pytest.param(
        [(0.0, "in", False), (0.5, "out", False), (0.5, "in", False), (1.0, "out", False),
         (1.0, "report", False)],
        [RequestStatsReport(1.0, 0.0, 2, 0)],
        id="two-500ms-requests-in-one-second-give-1.0",
    ),
    pytest.param(
        [(0.0, "in", False), (0.0, "in", False), (0.0, "in", False), (1.0, "report", False),
         (2.0, "report", False)],
        [RequestStatsReport(3.0, 0.0, 3, 0), RequestStatsReport(3.0, 0.0, 0, 0)],
        id="three-steady-clients-give-3.0-and-carry-over",
    ),
    pytest.param(
        [(0.5, "in", False), (1.0, "report", False), (1.5, "out", False), (2.0, "report", False)],
        [RequestStatsReport(0.5, 0.0, 1, 0), RequestStatsReport(0.5, 0.0, 0, 0)],
        id="request-spanning-two-periods-counts-once-weighs-in-both",
    ),
    pytest.param(
        [(0.0, "in", True), (0.0, "in", False), (0.25, "out", True), (1.0, "report", False)],
        [RequestStatsReport(1.25, 0.25, 2, 1)],
        id="proxied-counts-in-both-figures",
    ),
    pytest.param(
        [(0.0, "in", False), (0.5, "in", True), (1.0, "report", False)],
        [RequestStatsReport(1.5, 0.5, 2, 1)],
        id="proxied-area-starts-with-the-first-proxied-arrival",
    ),
    pytest.param(
        [(0.0, "in", True), (0.25, "in", False), (0.5, "out", True), (1.0, "report", False),
         (1.5, "in", True), (2.0, "report", False)],
        [RequestStatsReport(1.25, 0.5, 2, 1), RequestStatsReport(1.5, 0.5, 1, 1)],
        id="proxied-area-stops-while-no-proxied-request-is-in-flight",
    ),
    pytest.param(
        [(0.0, "report", False)],
        [RequestStatsReport(0.0, 0.0, 0, 0)],
        id="no-elapsed-time-reports-zero",
    ),
    pytest.param(
        [(1.0, "report", False), (3.0, "report", False)],
        [RequestStatsReport(0.0, 0.0, 0, 0), RequestStatsReport(0.0, 0.0, 0, 0)],
        id="idle-periods-report-zero",
    ),
    pytest.param(
        [(0.0, "in", False), (1.0, "report", False), (0.5, "out", False), (2.0, "report", False)],
        [RequestStatsReport(1.0, 0.0, 1, 0), RequestStatsReport(0.0, 0.0, 0, 0)],
        id="stale-timestamp-adds-no-time",
    ),
]


@pytest.mark.parametrize(("events", "want"), ACCOUNTING_CASES)
def test_time_weighted_accounting(events, want):
    stats = RequestStats(T0)
    got = []
    for t, kind, proxied in events:
        if kind == "in":
            stats.request_in(T0 + t, proxied)
        elif kind == "out":
            stats.request_out(T0 + t, proxied)
        else:
            got.append(stats.report(T0 + t))
    assert got == want


def test_out_without_in_is_a_bug():
    stats = RequestStats(T0)
    with pytest.raises(RuntimeError):
        stats.request_out(T0, False)
    stats.request_in(T0, False)
    with pytest.raises(RuntimeError):
        stats.request_out(T0, True)


PROXIED_CASES = [
    pytest.param("activator", True, id="activator"),
    pytest.param(b"activator", True, id="activator-bytes"),
    pytest.param("Activator", False, id="value-is-case-sensitive"),
    pytest.param("", False, id="empty"),
    pytest.param(None, False, id="absent"),
    pytest.param("queue", False, id="other"),
]


@pytest.mark.parametrize(("value", "want"), PROXIED_CASES)
def test_is_proxied(value, want):
    assert is_proxied(value) is want


def test_stat_from_report_publishes_rates_and_uptime():
    stat = stat_from_report(RequestStatsReport(1.5, 0.5, 4, 2), "pod-a", 12.0, period_s=2.0)
    assert stat == Stat("pod-a", 1.5, 0.5, 2.0, 1.0, 12.0, 0)


async def test_reporter_cuts_a_stat_every_second(clock: FakeClock):
    stats = RequestStats(clock.now())
    seen: list[Stat] = []
    reporter = StatReporter(stats, "pod-a", clock, seen.append)
    assert reporter.current() == Stat(pod_name="pod-a")
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0)
    stats.request_in(clock.now(), True)
    stats.request_in(clock.now(), False)
    await clock.advance(0.5)
    stats.request_out(clock.now(), False)
    await clock.advance(0.5)
    assert seen == [Stat("pod-a", 1.5, 1.0, 2.0, 1.0, 1.0, 0)]
    await clock.advance(1.0)
    assert seen[1] == Stat("pod-a", 1.0, 1.0, 0.0, 0.0, 2.0, 0)
    assert reporter.current() is seen[1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_reporter_survives_a_failing_callback(clock: FakeClock, caplog):
    calls = []

    def boom(stat: Stat) -> None:
        calls.append(stat)
        raise ValueError("sink down")

    reporter = StatReporter(RequestStats(clock.now()), "p", clock, boom)
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0)
    await clock.advance(1.0)
    await clock.advance(1.0)
    assert len(calls) == 2
    assert "stat report failed" in caplog.text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
