"""Concurrency reporter: the cold-start poke, its subtraction, entry lifetime (reference 3.4)."""

from __future__ import annotations

import asyncio

import pytest

from activator.reporter import ConcurrencyReporter
from dataplane import RevisionKey, Stat

A = RevisionKey("default", "a-00001")
B = RevisionKey("default", "b-00001")
T0 = 1_000.0


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[RevisionKey, Stat]] = []

    def send(self, key: RevisionKey, stat: Stat) -> None:
        self.sent.append((key, stat))

    def take(self) -> list[tuple[RevisionKey, float, float]]:
        out = [(k, round(s.average_concurrent_requests, 6), s.request_count) for k, s in self.sent]
        self.sent.clear()
        return out


# Steps: (seconds from T0, op, key, what the sink must have received by then, in order).
# op: "in" / "out" a request for key, or "report" (key unused).
CASES = [
    pytest.param([
        (0.2, "in", A, [(A, 1.0, 1.0)]),
        (1.0, "report", None, [(A, 0.0, 0.0)]),
        (1.7, "out", A, []),
        (2.0, "report", None, [(A, 0.7, 0.0)]),
        (3.0, "report", None, [(A, 0.0, 0.0)]),
        (3.5, "in", A, [(A, 1.0, 1.0)]),
    ], id="worked-example-poke-subtract-drop-poke-again"),
    pytest.param([
        (0.0, "in", A, [(A, 1.0, 1.0)]),
        (0.0, "in", A, []),
        (0.0, "in", A, []),
        (1.0, "report", None, [(A, 2.0, 2.0)]),
        (2.0, "report", None, [(A, 3.0, 0.0)]),
    ], id="burst-subtracts-the-poke-once"),
    pytest.param([
        (0.5, "in", A, [(A, 1.0, 1.0)]),
        (0.6, "out", A, []),
        (1.0, "report", None, [(A, 0.0, 0.0)]),
        (2.0, "report", None, [(A, 0.0, 0.0)]),
        (3.0, "report", None, []),
    ], id="short-request-floors-at-zero-and-entry-goes"),
    pytest.param([
        (0.0, "in", A, [(A, 1.0, 1.0)]),
        (0.0, "in", B, [(B, 1.0, 1.0)]),
        (0.5, "out", B, []),
        (1.0, "report", None, [(A, 0.0, 0.0), (B, 0.0, 0.0)]),
        (2.0, "report", None, [(A, 1.0, 0.0), (B, 0.0, 0.0)]),
        (3.0, "report", None, [(A, 1.0, 0.0)]),
    ], id="per-revision-entries"),
    pytest.param([
        (0.0, "in", A, [(A, 1.0, 1.0)]),
        (1.0, "report", None, [(A, 0.0, 0.0)]),
        (5.0, "report", None, [(A, 1.0, 0.0)]),
        (9.0, "report", None, [(A, 1.0, 0.0)]),
    ], id="long-request-keeps-its-entry-through-quiet-periods"),
]


@pytest.mark.parametrize("steps", CASES)
def test_reporter_steps(clock, steps):
    sink = Sink()
    reporter = ConcurrencyReporter(sink, clock, pod_name="act-0")
    for t, op, key, want in steps:
        now = T0 + t
        if op == "in":
            reporter.request_in(key, now)
        elif op == "out":
            reporter.request_out(key, now)
        else:
            for k, stat in reporter.report(now):
                sink.send(k, stat)
        assert sink.take() == want, f"at t={t} {op}"


def test_stats_carry_the_pod_name_and_no_proxied_load(clock):
    sink = Sink()
    reporter = ConcurrencyReporter(sink, clock, pod_name="act-0")
    reporter.request_in(A, T0)
    (_, poke), = sink.sent
    assert poke == Stat(pod_name="act-0", average_concurrent_requests=1.0, request_count=1.0)
    (_, stat), = reporter.report(T0 + 1)
    assert stat.pod_name == "act-0"
    assert stat.average_proxied_concurrent_requests == stat.proxied_request_count == 0.0
    assert reporter.pokes == 1 and reporter.in_flight(A) == 1


async def test_run_reports_every_period_on_the_clock(clock):
    sink = Sink()
    reporter = ConcurrencyReporter(sink, clock)
    task = asyncio.ensure_future(reporter.run())
    await asyncio.sleep(0)
    reporter.request_in(A, clock.now())
    sink.take()
    await clock.advance(0.99)
    assert sink.take() == []
    await clock.advance(0.01)
    assert sink.take() == [(A, 0.0, 0.0)]
    await clock.advance(1.0)
    assert sink.take() == [(A, 1.0, 0.0)]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_failing_sink_does_not_fail_the_request(clock, caplog):
    class Broken:
        def send(self, key, stat):
            raise OSError("sink down")

    reporter = ConcurrencyReporter(Broken(), clock)
    reporter.request_in(A, T0)  # the poke fails; the request still counts
    assert reporter.in_flight(A) == 1
    assert reporter.report_once() == 1
    assert "stat sink failed" in caplog.text
