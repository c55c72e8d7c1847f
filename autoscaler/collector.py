"""One revision's metric windows: where scraped and pushed Stats become observations.

Theory of operation (Knative pkg/autoscaler/metrics/collector.go, reference 3.5 and 2.4).
Each revision keeps four windows of 1 s buckets: stable and panic for concurrency, stable
and panic for requests per second (both metrics are kept, so switching the scaling metric
keeps its history). A Stat is recorded as two values:

    concurrency = average_concurrent_requests - average_proxied_concurrent_requests
    rps         = request_count - proxied_request_count

and each value is ADDED to the bucket of its second in both windows of its metric. The
scraper's stat covers the pods (extrapolated to all of them) and each activator's stat
covers the requests it holds; the pods' proxied share is the activator's own load, so it
is subtracted from the pods' figure and the sum over one second is the revision-wide
total with nothing counted twice.

Worked example: in second t the scraper reports 10.0 concurrency of which 4.0 came through
the activator, and two activators report 3.0 and 2.0 (requests they hold, queued or in
flight). The bucket for t holds (10 - 4) + 3 + 2 = 11.0; a 6 s panic window with only
that bucket reads 11.0, and with target 7 the decider wants ceil(11 / 7) = 2 pods.

No data. When the stable window is empty (nothing written for longer than the window)
and the revision has a scrape target, `observe` returns None and the decider keeps its
last answer. Without a scrape target (TBC = -1: pods are never scraped, the activator
sees every request) silence means no traffic and empty windows read 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dataplane.stat import Stat

from .decider import Observation
from .windows import LinearWindow, WeightedWindow, make_window, normalize_algorithm

__all__ = ["CollectionStats", "MetricCollection", "is_poke", "stat_record_time"]

CONCURRENCY = "concurrency"
RPS = "rps"
BUCKET_S = 1.0  # Knative's config.BucketSize


def stat_record_time(now: float, timestamp: int, wall_now: float) -> float:
    """The Clock time at which to record a pushed stat stamped `timestamp` (unix seconds).

    Knative stamps an unstamped (0) stat with the current unix second on receipt and
    records it in that second; a stamped one is recorded in its own second. Windows here
    run on the Clock (monotonic), so the stat's age in whole wall seconds is carried over
    to it. A stamp from the future (skewed activator clock) counts as now.
    """
    if timestamp == 0:
        return now
    age_s = math.floor(wall_now) - timestamp
    return now - max(0, age_s)


def is_poke(desired_pods: int, concurrency: float) -> bool:
    """Whether a pushed (activator) stat with this concurrency runs the decider at once.

    Knative (multiscaler.go `Poke`): a stat carrying concurrency for a revision whose
    desired scale is 0 is a cold start, and deciding now instead of at the next 2 s tick
    takes up to 2 s off the first request. Knative checks for exactly 0; we also poke at
    -1 (nothing decided yet), so a new revision's first request is not left waiting for
    a tick either: the decider runs earlier, with the same inputs a tick would have.
    Examples: (0, 1.0) and (-1, 1.0) poke; (0, 0.0) and (1, 5.0) do not.
    """
    return concurrency != 0 and desired_pods <= 0


@dataclass(frozen=True, slots=True)
class CollectionStats:
    """A frozen view of one collection for tests and debugging."""

    metric: str
    algorithm: str
    stable_window_s: float
    panic_window_s: float
    has_scrape_target: bool
    records: int


class MetricCollection:
    """The stable and panic windows of one revision, for concurrency and rps."""

    __slots__ = (
        "_metric", "_algorithm", "_stable_window_s", "_panic_window_s",
        "_has_scrape_target", "_records",
        "_stable_concurrency", "_panic_concurrency", "_stable_rps", "_panic_rps",
    )

    def __init__(
        self,
        *,
        stable_window_s: float,
        panic_window_s: float,
        metric: str = CONCURRENCY,
        algorithm: str = "linear",
        has_scrape_target: bool = True,
    ) -> None:
        self._metric = metric
        self._algorithm = normalize_algorithm(algorithm)
        self._stable_window_s = stable_window_s
        self._panic_window_s = panic_window_s
        self._has_scrape_target = has_scrape_target
        self._records = 0
        self._build_windows()

    def _build_windows(self) -> None:
        def new(window_s: float) -> LinearWindow | WeightedWindow:
            return make_window(self._algorithm, window_s, BUCKET_S)

        self._stable_concurrency = new(self._stable_window_s)
        self._panic_concurrency = new(self._panic_window_s)
        self._stable_rps = new(self._stable_window_s)
        self._panic_rps = new(self._panic_window_s)

    @property
    def metric(self) -> str:
        """The scaling metric observed: "concurrency" or "rps"."""
        return self._metric

    @property
    def has_scrape_target(self) -> bool:
        """Whether pods are scraped (False when TBC is -1)."""
        return self._has_scrape_target

    def record(self, now: float, stat: Stat) -> None:
        """Add one stat's non-proxied load to the buckets for `now`; ValueError if not finite."""
        concurrency = stat.average_concurrent_requests - stat.average_proxied_concurrent_requests
        rps = stat.request_count - stat.proxied_request_count
        if not (math.isfinite(concurrency) and math.isfinite(rps)):
            # A NaN or inf from the wire would poison a window for a whole stable window
            # (and the decider refuses it): refuse it here, where the sender is known.
            raise ValueError(f"stat from {stat.pod_name!r} is not finite: "
                             f"concurrency={concurrency} rps={rps}")
        self._stable_concurrency.record(now, concurrency)
        self._panic_concurrency.record(now, concurrency)
        self._stable_rps.record(now, rps)
        self._panic_rps.record(now, rps)
        self._records += 1

    def observe(self, now: float) -> Observation | None:
        """Revision-wide stable and panic averages of the metric; None means no data."""
        if self._metric == RPS:
            stable, panic = self._stable_rps, self._panic_rps
        else:
            stable, panic = self._stable_concurrency, self._panic_concurrency
        if self._has_scrape_target and stable.is_empty(now):
            return None
        return Observation(stable.average(now), panic.average(now))

    def update(
        self,
        *,
        now: float,
        stable_window_s: float,
        panic_window_s: float,
        metric: str = CONCURRENCY,
        algorithm: str = "linear",
        has_scrape_target: bool = True,
    ) -> None:
        """Apply a new spec: windows keep their recent buckets; a new algorithm starts over."""
        self._metric = metric
        self._has_scrape_target = has_scrape_target
        algorithm = normalize_algorithm(algorithm)
        if algorithm != self._algorithm:
            # Knative fixes the algorithm when the collection is created; a changed
            # annotation there needs a new collection, which is what we build here.
            self._algorithm = algorithm
            self._stable_window_s, self._panic_window_s = stable_window_s, panic_window_s
            self._build_windows()
            return
        if stable_window_s != self._stable_window_s:
            self._stable_concurrency.resize(stable_window_s, now)
            self._stable_rps.resize(stable_window_s, now)
            self._stable_window_s = stable_window_s
        if panic_window_s != self._panic_window_s:
            self._panic_concurrency.resize(panic_window_s, now)
            self._panic_rps.resize(panic_window_s, now)
            self._panic_window_s = panic_window_s

    def stats(self) -> CollectionStats:
        """A frozen snapshot of the configuration and how many stats were recorded."""
        return CollectionStats(
            metric=self._metric,
            algorithm=self._algorithm,
            stable_window_s=self._stable_window_s,
            panic_window_s=self._panic_window_s,
            has_scrape_target=self._has_scrape_target,
            records=self._records,
        )

    def __repr__(self) -> str:
        return f"MetricCollection({self.stats()!r})"
