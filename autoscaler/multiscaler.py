"""The multiscaler: one decider and one metric collection per revision, and their loops.

Theory of operation (Knative pkg/autoscaler/scaling/multiscaler.go, metrics/collector.go).

* `watch(key, spec, ...)` creates a revision's Decider and MetricCollection. Its status
  starts at desired -1 (unknown) with Knative's initial excess burst capacity.
* Scrape loop, one task per revision, every `scrape_interval_s` (1 s): when the revision
  has a scrape target (TBC != -1) and a scraper is configured, scrape a sample of its
  ready pods and record the extrapolated stat at the Clock time the scrape finished.
* Tick loop, one task, every `tick_interval_s` (2 s): for each revision read the ready
  count and the collection's observation and run the decider. An invalid tick (None)
  changes nothing. A valid one updates the status and calls `on_decision(key, decision)`
  only when the desired count changed or the sign of EBC flipped (0 counts as
  non-negative): the consumer (the scaler that patches replicas and flips the activator
  in or out of the path) cares about nothing else. The first valid decision always
  informs, since no count equals the initial -1.
* Pushed stats (`ingest`, from activators) are recorded at their own second and poke the
  revision, that is run its decider at once instead of at the next tick, when the stat
  carries concurrency and the revision is at desired 0 (or nothing was decided yet): this
  is the cold-start path, where waiting up to 2 s for a tick would add 2 s to the first
  request's latency.

Worked example: a revision idles at desired 0, EBC -111. An activator stat with
concurrency 1 arrives; it is recorded and the decider runs at once: stable average 1 over
the window, target 7, so desired ceil(1 / 7) = 1 and `on_decision` fires with 1. The next
tick again answers 1 with EBC still negative, so nothing is sent.

Everything here runs on one event loop, so a poke runs the decider synchronously and
cannot interleave with a tick.

Why each revision keeps its own window objects rather than rows of a `WindowBatch`
(batch.py gives the same numbers and reads 10,000 revisions ~100x faster): stats arrive
one revision at a time (each scrape loop, each activator message), and a one-row numpy
record costs more than the Python window's; a poke needs one revision's averages at
once, which the batch can only give by reading every row; and the tick still runs one
Python Decider per revision. Batching pays only with stats buffered per second and
flushed in one call before the tick, pokes read through a one-row path, and the
deciders vectorised too: a redesign of this module, not a swap of the window store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dataplane.clock import Clock
from dataplane.stat import Stat
from dataplane.types import RevisionKey

from .collector import MetricCollection, is_poke, stat_record_time
from .config import ScalingSpec
from .decider import Decider, Decision, Observation
from .scraper import ReadyPod

__all__ = [
    "Multiscaler",
    "MultiscalerStats",
    "OnDecision",
    "PodsSource",
    "RevisionSnapshot",
    "Scraper",
]

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 2.0    # Knative's tickInterval
SCRAPE_INTERVAL_S = 1.0  # Knative's scrapeTickInterval

OnDecision = Callable[[RevisionKey, Decision], None]
PodsSource = Callable[[], Sequence[ReadyPod]]
"""The revision's Running-and-Ready pods now; raising means the count is unknown."""


class Scraper(Protocol):
    """What the multiscaler needs from a scraper (`PodScraper` fits)."""

    async def scrape(
        self, pods: Sequence[ReadyPod], *, now: float, stable_window_s: float
    ) -> Stat | None: ...


@dataclass(frozen=True, slots=True)
class RevisionSnapshot:
    """One revision's state after its last valid tick, for metrics and debugging."""

    key: RevisionKey
    service_name: str
    configuration_name: str
    metric: str
    decided: bool
    desired_pods: int
    excess_burst_capacity: int
    panic: bool
    stable_value: float
    panic_value: float
    target_value: float
    ready_pods: int


@dataclass(frozen=True, slots=True)
class MultiscalerStats:
    """Counters of the multiscaler's work, for tests and debugging."""

    revisions: int
    ticks: int
    decisions_sent: int
    pokes: int
    scrapes: int
    scrape_errors: int
    stats_ingested: int
    stats_unknown_revision: int
    errors: int


class _Revision:
    """Everything the multiscaler holds for one revision."""

    __slots__ = (
        "key", "spec", "decider", "collection", "pods", "service_name",
        "configuration_name", "status", "decided", "observed", "ready_pods", "scrape_task",
    )

    def __init__(self, key: RevisionKey, spec: ScalingSpec, decider: Decider,
                 collection: MetricCollection, pods: PodsSource, service_name: str,
                 configuration_name: str) -> None:
        self.key = key
        self.spec = spec
        self.decider = decider
        self.collection = collection
        self.pods = pods
        self.service_name = service_name
        self.configuration_name = configuration_name
        self.status: Decision = decider.initial_decision
        self.decided = False
        self.observed = Observation(0.0, 0.0)
        self.ready_pods = 0
        self.scrape_task: asyncio.Task[None] | None = None


def _is_news(old: Decision, new: Decision) -> bool:
    # Knative's updateLatestScale: a changed count, or EBC crossing zero either way.
    return (old.desired_pods != new.desired_pods
            or (old.excess_burst_capacity >= 0) != (new.excess_burst_capacity >= 0))


class Multiscaler:
    """Runs every watched revision's scrape loop and decider tick; reports changed decisions."""

    def __init__(
        self,
        *,
        clock: Clock,
        on_decision: OnDecision,
        scraper: Scraper | None = None,
        tick_interval_s: float = TICK_INTERVAL_S,
        scrape_interval_s: float = SCRAPE_INTERVAL_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._on_decision = on_decision
        self._scraper = scraper
        self._tick_interval_s = tick_interval_s
        self._scrape_interval_s = scrape_interval_s
        # Wall time only to age pushed stats by their unix-second timestamp (wire format).
        self._wall_clock = wall_clock
        self._revisions: dict[RevisionKey, _Revision] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._ticks = self._sent = self._pokes = 0
        self._scrapes = self._scrape_errors = self._errors = 0
        self._ingested = self._unknown = 0

    # --- revisions -------------------------------------------------------------------

    def watch(
        self,
        key: RevisionKey,
        spec: ScalingSpec,
        *,
        panic_window_s: float,
        pods: PodsSource,
        algorithm: str = "linear",
        service_name: str = "",
        configuration_name: str = "",
    ) -> None:
        """Start deciding for a revision; raises ValueError if it is already watched."""
        if key in self._revisions:
            raise ValueError(f"revision {key} is already watched; use update()")
        now = self._clock.now()
        decider = Decider(spec, now=now, ready_pods=self._ready_count(key, pods))
        collection = MetricCollection(
            stable_window_s=spec.stable_window, panic_window_s=panic_window_s,
            metric=spec.metric, algorithm=algorithm,
            has_scrape_target=spec.target_burst_capacity != -1,
        )
        rev = _Revision(key, spec, decider, collection, pods, service_name, configuration_name)
        self._revisions[key] = rev
        self._start_scraping(rev)

    def update(
        self,
        key: RevisionKey,
        spec: ScalingSpec,
        *,
        panic_window_s: float,
        algorithm: str = "linear",
        pods: PodsSource | None = None,
    ) -> None:
        """Apply a new spec (and windows) to a watched revision; raises KeyError if unknown."""
        rev = self._revisions[key]
        rev.spec = spec
        rev.decider.update(spec)
        rev.collection.update(
            now=self._clock.now(), stable_window_s=spec.stable_window,
            panic_window_s=panic_window_s, metric=spec.metric, algorithm=algorithm,
            has_scrape_target=spec.target_burst_capacity != -1,
        )
        if pods is not None:
            rev.pods = pods

    def forget(self, key: RevisionKey) -> None:
        """Stop deciding for a revision and drop its history (unknown keys are ignored)."""
        rev = self._revisions.pop(key, None)
        if rev is not None and rev.scrape_task is not None:
            rev.scrape_task.cancel()

    def decision(self, key: RevisionKey) -> Decision | None:
        """The revision's current status (desired -1 before any valid tick); None if unknown."""
        rev = self._revisions.get(key)
        return rev.status if rev is not None else None

    # --- deciding --------------------------------------------------------------------

    def poke(self, key: RevisionKey) -> Decision | None:
        """Run one revision's decider now; the decision, or None if invalid or unknown."""
        rev = self._revisions.get(key)
        if rev is None:
            return None
        self._pokes += 1
        return self._decide(rev, self._clock.now())

    def ingest(self, key: RevisionKey, stat: Stat, now: float) -> None:
        """Record a pushed (activator) stat and poke a revision that is at zero.

        Raises ValueError for a stat with a non-finite value (nothing is recorded).
        """
        rev = self._revisions.get(key)
        if rev is None:
            self._unknown += 1  # Knative drops stats for revisions it does not collect
            return
        self._ingested += 1
        rev.collection.record(stat_record_time(now, stat.timestamp, self._wall_clock()), stat)
        if is_poke(rev.status.desired_pods, stat.average_concurrent_requests):
            self.poke(key)

    def tick(self) -> None:
        """Run every revision's decider once (the tick loop's body)."""
        self._ticks += 1
        now = self._clock.now()
        for rev in list(self._revisions.values()):
            try:
                self._decide(rev, now)
            except Exception:
                # The edge of one revision's tick: a bug there must not stop the others.
                self._errors += 1
                log.exception("deciding for %s failed", rev.key)

    def _ready_count(self, key: RevisionKey, pods: PodsSource) -> int | None:
        try:
            return len(pods())
        except Exception:
            # The edge of a tick: an unreadable count makes this tick invalid (Knative's
            # lister error), it must not stop the other revisions.
            self._errors += 1
            log.exception("reading the ready pods of %s failed", key)
            return None

    def _decide(self, rev: _Revision, now: float) -> Decision | None:
        ready = self._ready_count(rev.key, rev.pods)
        observed = rev.collection.observe(now)
        decision = rev.decider.decide(now, ready_pods=ready, observed=observed)
        if decision is None:
            return None
        # TBC -1 reads missing data as no traffic (the decider did the same substitution).
        rev.observed = observed if observed is not None else Observation(0.0, 0.0)
        rev.ready_pods = ready or 0
        news = not rev.decided or _is_news(rev.status, decision)
        rev.status, rev.decided = decision, True
        if news:
            self._sent += 1
            try:
                self._on_decision(rev.key, decision)
            except Exception:
                self._errors += 1
                log.exception("on_decision for %s failed", rev.key)
        return decision

    # --- loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the tick loop and every scrape loop until cancelled; a loop's crash surfaces."""
        if self._tg is not None:
            raise RuntimeError("Multiscaler.run() is already running")
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for rev in self._revisions.values():
                    self._start_scraping(rev)
                tg.create_task(self._tick_loop(), name="multiscaler-tick")
        finally:
            self._tg = None
            for rev in self._revisions.values():
                rev.scrape_task = None

    def _start_scraping(self, rev: _Revision) -> None:
        if self._tg is not None and rev.scrape_task is None:
            rev.scrape_task = self._tg.create_task(
                self._scrape_loop(rev), name=f"multiscaler-scrape-{rev.key}"
            )

    async def _tick_loop(self) -> None:
        while True:
            await self._clock.sleep(self._tick_interval_s)
            self.tick()

    async def _scrape_loop(self, rev: _Revision) -> None:
        while True:
            await self._clock.sleep(self._scrape_interval_s)
            if self._scraper is None or not rev.collection.has_scrape_target:
                continue
            try:
                await self._scrape_once(rev, self._scraper)
            except Exception:
                # The edge of a loop tick: log and count, then try again next second.
                self._scrape_errors += 1
                log.warning("scraping %s failed", rev.key, exc_info=True)

    async def _scrape_once(self, rev: _Revision, scraper: Scraper) -> None:
        pods = rev.pods()
        stat = await scraper.scrape(
            pods, now=self._clock.now(), stable_window_s=rev.spec.stable_window
        )
        self._scrapes += 1
        if stat is not None and self._revisions.get(rev.key) is rev:
            # Knative records a scrape at the time it finished.
            rev.collection.record(self._clock.now(), stat)

    # --- introspection ---------------------------------------------------------------

    def snapshots(self) -> list[RevisionSnapshot]:
        """Every watched revision's state (for the Prometheus collector)."""
        return [
            RevisionSnapshot(
                key=rev.key,
                service_name=rev.service_name,
                configuration_name=rev.configuration_name,
                metric=rev.spec.metric,
                decided=rev.decided,
                desired_pods=rev.status.desired_pods,
                excess_burst_capacity=rev.status.excess_burst_capacity,
                panic=rev.status.panic,
                stable_value=rev.observed.stable,
                panic_value=rev.observed.panic,
                target_value=rev.spec.target_value,
                ready_pods=rev.ready_pods,
            )
            for rev in self._revisions.values()
        ]

    def stats(self) -> MultiscalerStats:
        """A frozen record of the counters."""
        return MultiscalerStats(
            revisions=len(self._revisions), ticks=self._ticks, decisions_sent=self._sent,
            pokes=self._pokes, scrapes=self._scrapes, scrape_errors=self._scrape_errors,
            stats_ingested=self._ingested, stats_unknown_revision=self._unknown,
            errors=self._errors,
        )
