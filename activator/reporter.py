"""The activator's concurrency reporter: per-revision load it holds, sent to a StatSink.

Theory of operation (Knative `pkg/activator/handler/concurrency_reporter.go`, reference
3.4). Each revision the activator holds requests for has an entry with its own
time-weighted accounting (`dataplane.stats.RequestStats`). A request counts from its
arrival at the activator to its completion, so time spent parked in the throttler is
load the autoscaler sees.

- Cold-start poke: the first request for a revision with no entry creates the entry
  and sends `Stat(average_concurrent_requests=1, request_count=1)` at once, so the
  autoscaler can scale from zero without waiting for the next report.
- Every period (1 s) `report()` cuts one Stat per entry. The first report after a poke
  subtracts what the poke already said: concurrency - 1 (floored at 0, since the real
  average over the period may be below 1) and request count - 1 (never negative: the
  poking request is in the count).
- An entry whose average over the period was 0 is dropped after that report, unless a
  request is in flight; the next request for that revision pokes again.
- Proxied fields stay 0: the activator's own load is not "proxied" from its view.

Worked example: a request arrives at t=0.2 for a cold revision and ends at t=1.7. At
t=0.2 the sink gets (1.0, 1). The report at t=1.0 measured 0.8 over 0.8 s → average 1.0,
count 1, minus the poke → (0.0, 0). The report at t=2.0 → (0.7, 0). The report at t=3.0 →
(0.0, 0) and the entry is dropped; a request at t=3.5 pokes again.

Only requests the activator holds (proxy mode) are counted; the handler does not call
this for serve-mode requests, which the pods' queue-proxies report themselves.
"""

from __future__ import annotations

import logging

from dataplane import REPORTING_PERIOD_S, Clock, RequestStats, RevisionKey, Stat, StatSink

__all__ = ["ConcurrencyReporter"]

_log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("stats", "first_request", "reported")

    def __init__(self, now: float) -> None:
        self.stats = RequestStats(now)
        self.first_request = 1.0  # the poke, to subtract from the next report
        self.reported = 0.0  # the average concurrency in the last periodic report


class ConcurrencyReporter:
    """Per-revision time-weighted concurrency of held requests, reported to a StatSink."""

    def __init__(
        self,
        sink: StatSink,
        clock: Clock,
        *,
        pod_name: str = "activator",
        period_s: float = REPORTING_PERIOD_S,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s: {period_s!r} must be > 0")
        self._sink = sink
        self._clock = clock
        self._pod_name = pod_name
        self._period_s = period_s
        self._entries: dict[RevisionKey, _Entry] = {}
        self.pokes = 0  # cold-start pokes sent (a plain counter for metrics and tests)

    def request_in(self, key: RevisionKey, now: float) -> None:
        """A request for `key` arrived; pokes the sink if the revision had no entry."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(now)
            self.pokes += 1
            self._send(key, Stat(
                pod_name=self._pod_name, average_concurrent_requests=1.0, request_count=1.0,
            ))
        entry.stats.request_in(now, proxied=False)

    def request_out(self, key: RevisionKey, now: float) -> None:
        """A request counted by `request_in(key)` finished."""
        entry = self._entries.get(key)
        if entry is None:
            # Only possible if the revision was forgotten while the request ran.
            return
        entry.stats.request_out(now, proxied=False)

    def in_flight(self, key: RevisionKey) -> int:
        """Requests for `key` counted in and not yet out."""
        entry = self._entries.get(key)
        return 0 if entry is None else entry.stats.concurrency

    def concurrency(self, key: RevisionKey) -> float:
        """The average concurrency last reported for `key` (poke subtracted); 0 without an entry."""
        entry = self._entries.get(key)
        return 0.0 if entry is None else entry.reported

    def forget(self, key: RevisionKey) -> None:
        """Drop a removed revision's entry (its requests in flight stop counting)."""
        self._entries.pop(key, None)

    def report(self, now: float) -> list[tuple[RevisionKey, Stat]]:
        """Cut one period: one Stat per revision with an entry, poke subtracted."""
        out = []
        for key, entry in list(self._entries.items()):
            rep = entry.stats.report(now)
            first, entry.first_request = entry.first_request, 0.0
            if rep.average_concurrency == 0 and entry.stats.concurrency == 0:
                del self._entries[key]
            entry.reported = max(rep.average_concurrency - first, 0.0)
            out.append((key, Stat(
                pod_name=self._pod_name,
                average_concurrent_requests=entry.reported,
                request_count=max(rep.request_count - first, 0.0) / self._period_s,
            )))
        return out

    def report_once(self) -> int:
        """Cut a report now and send each Stat to the sink; returns how many were sent."""
        stats = self.report(self._clock.now())
        for key, stat in stats:
            self._send(key, stat)
        return len(stats)

    async def run(self) -> None:
        """Report every period until cancelled, on a fixed grid so sleeps do not drift."""
        deadline = self._clock.now() + self._period_s
        while True:
            await self._clock.sleep(max(0.0, deadline - self._clock.now()))
            self.report_once()
            deadline += self._period_s
            now = self._clock.now()
            if deadline <= now:  # fell behind (a stalled loop): skip the missed ticks
                deadline = now + self._period_s

    def _send(self, key: RevisionKey, stat: Stat) -> None:
        try:
            self._sink.send(key, stat)
        except Exception:  # a failing sink must not fail the request or stop reporting
            _log.exception("stat sink failed for %s", key)
