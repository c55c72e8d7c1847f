"""Time-weighted in-flight accounting, as Knative's queue-proxy reports it (reference 3.2).

Theory of operation (knative/networking `pkg/http/stats/request.go`):
before every event and every report the accounting integrates the current concurrency
over the time since the last change:

    area += concurrency * dt;  proxied_area += proxied_concurrency * dt;  elapsed += dt

A report (cut every 1 s by `StatReporter`) divides the areas by the elapsed time, returns
the number of arrivals in the period, and resets the accumulators; the concurrency itself
carries over into the next period.

Worked example: a period from t=0 to t=1 with two requests, 0.0-0.5 and 0.5-1.0:
area = 1*0.5 + 1*0.5 = 1.0, elapsed = 1.0, so the average concurrency is 1.0 and the
request count is 2. A request still running at t=1 adds to the next period too.

Proxied requests (`K-Proxy-Request: activator`) count in both the totals and the proxied
figures; the autoscaler subtracts them because the activator reports them itself.
Accounting is meant to run *before* the breaker, so queued requests count as load, and
kubelet probes are not counted at all (the caller skips them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from .clock import Clock
from .stat import Stat

__all__ = [
    "ACTIVATOR_NAME",
    "PROXY_HEADER",
    "REPORTING_PERIOD_S",
    "RequestStats",
    "RequestStatsReport",
    "StatReporter",
    "is_proxied",
    "stat_from_report",
]

_log = logging.getLogger(__name__)

PROXY_HEADER = "K-Proxy-Request"
ACTIVATOR_NAME = "activator"
# Knative's queue-proxy reporting period (sharedmain/main.go `reportingPeriod`).
REPORTING_PERIOD_S = 1.0


def is_proxied(k_proxy_request: str | bytes | None) -> bool:
    """True when the `K-Proxy-Request` header value marks a request sent by the activator."""
    # Exact, case-sensitive comparison of the value, as Knative's handler does.
    if k_proxy_request is None:
        return False
    if isinstance(k_proxy_request, bytes):
        return k_proxy_request == b"activator"
    return k_proxy_request == ACTIVATOR_NAME


class RequestStatsReport(NamedTuple):
    """One period's figures: averages over time and arrival counts."""

    average_concurrency: float
    average_proxied_concurrency: float
    request_count: int
    proxied_request_count: int


class RequestStats:
    """In-flight accounting for one queue-proxy; every method takes `now` (monotonic s)."""

    __slots__ = (
        "_last_change",
        "_concurrency",
        "_proxied_concurrency",
        "_area",
        "_proxied_area",
        "_elapsed",
        "_request_count",
        "_proxied_request_count",
    )

    def __init__(self, now: float) -> None:
        self._last_change = now
        self._concurrency = 0
        self._proxied_concurrency = 0
        self._area = 0.0
        self._proxied_area = 0.0
        self._elapsed = 0.0
        self._request_count = 0
        self._proxied_request_count = 0

    @property
    def concurrency(self) -> int:
        """Requests in flight now (proxied ones included)."""
        return self._concurrency

    def _integrate(self, now: float) -> None:
        dt = now - self._last_change
        # A clock that did not move (or a stale `now`) adds nothing, as in Knative.
        if dt > 0:
            self._elapsed += dt
            self._area += self._concurrency * dt
            self._proxied_area += self._proxied_concurrency * dt
            self._last_change = now

    # request_in/request_out run on every request: `_integrate` is inlined in them (a
    # method call is a third of their cost), and the proxied area is only touched while a
    # proxied request is in flight (adding 0.0 changes no float). Same arithmetic, same
    # numbers; measured 410 -> 320 ns for an in/out pair on CPython 3.11.
    def request_in(self, now: float, proxied: bool) -> None:
        """Record an arrival."""
        dt = now - self._last_change
        if dt > 0:
            self._elapsed += dt
            self._area += self._concurrency * dt
            if self._proxied_concurrency:
                self._proxied_area += self._proxied_concurrency * dt
            self._last_change = now
        self._concurrency += 1
        self._request_count += 1
        if proxied:
            self._proxied_concurrency += 1
            self._proxied_request_count += 1

    def request_out(self, now: float, proxied: bool) -> None:
        """Record a completion (pass the same `proxied` as the matching `request_in`)."""
        dt = now - self._last_change
        if dt > 0:
            self._elapsed += dt
            self._area += self._concurrency * dt
            if self._proxied_concurrency:
                self._proxied_area += self._proxied_concurrency * dt
            self._last_change = now
        if self._concurrency <= 0 or (proxied and self._proxied_concurrency <= 0):
            raise RuntimeError("request_out without a matching request_in")
        self._concurrency -= 1
        if proxied:
            self._proxied_concurrency -= 1

    def report(self, now: float) -> RequestStatsReport:
        """Cut a period: averages since the last report, arrivals in it; then reset."""
        self._integrate(now)
        if self._elapsed > 0:
            avg = self._area / self._elapsed
            avg_proxied = self._proxied_area / self._elapsed
        else:
            avg = avg_proxied = 0.0
        out = RequestStatsReport(avg, avg_proxied, self._request_count, self._proxied_request_count)
        self._area = self._proxied_area = self._elapsed = 0.0
        self._request_count = self._proxied_request_count = 0
        return out


def stat_from_report(
    report: RequestStatsReport, pod_name: str, uptime_s: float,
    period_s: float = REPORTING_PERIOD_S,
) -> Stat:
    """The Stat the queue-proxy publishes for a report (counts as per-second rates)."""
    # Knative divides by the nominal period, not the measured one (protobuf_stats_reporter.go).
    return Stat(
        pod_name=pod_name,
        average_concurrent_requests=report.average_concurrency,
        average_proxied_concurrent_requests=report.average_proxied_concurrency,
        request_count=report.request_count / period_s,
        proxied_request_count=report.proxied_request_count / period_s,
        process_uptime=uptime_s,
        timestamp=0,
    )


class StatReporter:
    """Every period, cut a report from `RequestStats` and hand the Stat to a callback."""

    def __init__(
        self,
        stats: RequestStats,
        pod_name: str,
        clock: Clock,
        on_stat: Callable[[Stat], None] | None = None,
        *,
        started_at: float | None = None,
        period_s: float = REPORTING_PERIOD_S,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s: {period_s!r} must be > 0")
        self._stats = stats
        self._pod_name = pod_name
        self._clock = clock
        self._on_stat = on_stat
        self._period_s = period_s
        self._started_at = clock.now() if started_at is None else started_at
        self.latest: Stat | None = None  # the last Stat cut, None before the first

    def empty_stat(self) -> Stat:
        """What the stats endpoint serves before the first report: only the pod name."""
        return Stat(pod_name=self._pod_name)

    def current(self) -> Stat:
        """The latest Stat, or `empty_stat()` before the first report."""
        return self.latest if self.latest is not None else self.empty_stat()

    def report_once(self) -> Stat:
        """Cut one report now, remember it and hand it to the callback."""
        now = self._clock.now()
        stat = stat_from_report(
            self._stats.report(now), self._pod_name, now - self._started_at, self._period_s
        )
        self.latest = stat
        if self._on_stat is not None:
            self._on_stat(stat)
        return stat

    async def run(self) -> None:
        """Report every period until cancelled, on a fixed grid so sleeps do not drift."""
        deadline = self._clock.now() + self._period_s
        while True:
            await self._clock.sleep(max(0.0, deadline - self._clock.now()))
            try:
                self.report_once()
            except Exception:  # one bad tick (a failing callback) must not stop reporting
                _log.exception("stat report failed")
            deadline += self._period_s
            now = self._clock.now()
            if deadline <= now:  # fell behind (a stalled loop): skip missed ticks
                deadline = now + self._period_s
