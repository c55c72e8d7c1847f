"""The glue between the autoscaler's decisions, the platform and the activator.

Theory of operation (Knative's KPA reconciler, in-process). Per revision it keeps the
PodAutoscaler state (`PAState`), the replicas last applied, the activator mode and since
when the activator has been in the path. A reconcile pass reads the multiscaler's latest
decision (desired -1 until the first valid tick) and the platform's ready pods, calls
`autoscaler.apply_decision`, and does what it says:

* `replicas` -> `platform.scale(key, replicas)`;
* `sks_mode` -> the revision's `RevisionEndpoints.mode` in the activator (PROXY: the
  activator throttles and buffers; SERVE: straight to ready pods); entering PROXY starts
  the proxy clock the scale-to-zero fast path reads;
* `recheck_at` -> another pass at that time; a changed PA state or mode -> another pass
  at once (Knative re-reconciles on those status changes).

Passes run in one loop task, one revision at a time, when something marks a revision
dirty: a decision the multiscaler reports (every changed desired count or EBC sign, and
the cold-start poke), a change to its pods, a new plan, or a due recheck. The activator
is in-process and programmed synchronously, so its probe always passes
(`activator_probe_ok`).

A new revision starts at its initial scale (`RevisionPlan.initial_replicas`): that is
the Deployment Knative creates; `apply_decision` leaves it alone until the first ready
pod (PA Activating) and the first valid decision.

Worked example (stable window 6 s, grace 2 s, TBC 211, one pod, load stops at t=0):
the decider's average reaches 0 at t~6 and reports desired 0 -> pass: the PA has been
Active for a whole window, so it reports 0 without applying and goes Inactive; the
state changed, so the pass runs again: the activator has proxied since the revision
started (EBC < 0 with one pod), longer than the grace period, so replicas 0 now
(Knative's fast path) and the platform drains the pod. Had the activator only just
entered the path, the pass would set a recheck for when the grace period ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler import (
    Decision,
    Multiscaler,
    PAState,
    ReadyPod,
    ScaleInputs,
    Scraper,
    SKSMode,
    apply_decision,
)
from dataplane import Clock, EndpointsSink, Mode, RevisionKey, Stat, first_of

from .platform import Platform, PodInfo
from .reconciler import RevisionPlan, endpoint_pods

__all__ = ["Autoscaling", "AutoscalingStats", "EventFn", "MultiscalerStatSink", "RevisionScale"]

_log = logging.getLogger(__name__)

# A pass that changes the PA state or mode runs again; a few rounds always settle
# (the PA's `since` moves only on a change), this only bounds a bug.
_MAX_ROUNDS = 4

EventFn = Callable[[str, RevisionKey, str], None]
"""(kind, revision, message) for people: "scale", "mode", "decision"."""


def _bounds_note(desired: int, plan: RevisionPlan) -> str:
    """Why the pods will differ from the decider's count, for the decision line."""
    s = plan.settings
    if desired < s.min_scale:
        return f" (min-scale keeps {s.min_scale})"
    if s.max_scale and desired > s.max_scale:
        return f" (max-scale caps it at {s.max_scale})"
    if desired == 0:
        return " (to zero once the scale-to-zero grace period allows)"
    return ""


class MultiscalerStatSink:
    """The activator's StatSink: each pushed stat goes to `Multiscaler.ingest` at Clock now."""

    def __init__(self, multiscaler: Multiscaler, clock: Clock) -> None:
        self._multiscaler = multiscaler
        self._clock = clock

    def send(self, key: RevisionKey, stat: Stat) -> None:
        """Record one activator stat (a cold-start poke runs the decider at once)."""
        try:
            self._multiscaler.ingest(key, stat, self._clock.now())
        except ValueError:  # a non-finite value: dropped, the reporter must go on
            _log.warning("dropped a bad stat for %s: %r", key, stat)


@dataclass(slots=True)
class RevisionScale:
    """One revision's scaling state (mutable; only the Autoscaling loop changes it)."""

    plan: RevisionPlan
    pa: PAState
    replicas: int
    mode: Mode
    proxy_since: float | None
    recheck_at: float | None = None
    desired: int = -1


@dataclass(frozen=True, slots=True)
class AutoscalingStats:
    """A snapshot for tests and debugging."""

    revisions: int
    passes: int
    scale_calls: int
    mode_flips: int


class Autoscaling:
    """Drives the platform and the activator's modes from the multiscaler's decisions."""

    def __init__(self, *, clock: Clock, platform: Platform, endpoints: EndpointsSink,
                 scraper: Scraper | None, on_event: EventFn | None = None,
                 tick_interval_s: float | None = None) -> None:
        self._clock = clock
        self._platform = platform
        self._endpoints = endpoints
        self._on_event = on_event or (lambda kind, key, message: None)
        extra = {} if tick_interval_s is None else {"tick_interval_s": tick_interval_s}
        self.multiscaler = Multiscaler(clock=clock, on_decision=self._on_decision,
                                       scraper=scraper, **extra)
        self.stat_sink = MultiscalerStatSink(self.multiscaler, clock)
        self._revisions: dict[RevisionKey, RevisionScale] = {}
        self._dirty: set[RevisionKey] = set()
        self._wake = asyncio.Event()
        self._passes = self._scale_calls = self._flips = 0

    def set_endpoints_sink(self, endpoints: EndpointsSink) -> None:
        """Point at the activator (built after this object, since it needs `stat_sink`)."""
        self._endpoints = endpoints

    # -- revisions ----------------------------------------------------------------------

    async def watch(self, plan: RevisionPlan, *, current_replicas: int | None = None) -> None:
        """Start running a revision: ensure it, list it in the activator, start its pods.

        `current_replicas` is what the platform already runs (Kubernetes: the Deployment
        the controller made, or an autoscaler restart finds); None starts at the initial
        scale. Either way the decider takes over from there.
        """
        key, now = plan.key, self._clock.now()
        await self._platform.ensure(key, plan.template)
        start = plan.initial_replicas if current_replicas is None else current_replicas
        rev = RevisionScale(plan, PAState.initial(now), start, Mode.PROXY, now)
        self._revisions[key] = rev
        self.multiscaler.watch(key, plan.spec, panic_window_s=plan.panic_window_s,
                               pods=self._ready_pods_source(key), algorithm=plan.algorithm,
                               service_name=plan.service,
                               configuration_name=plan.configuration)
        self._push_endpoints(rev, self._platform.pods(key))
        if rev.replicas and current_replicas is None:
            self._scale_calls += 1
            await self._platform.scale(key, rev.replicas)
        self._mark(key)

    def update(self, plan: RevisionPlan) -> None:
        """A revision's new plan (reachability or config changed): re-resolve and re-pass."""
        rev = self._revisions.get(plan.key)
        if rev is None:
            return
        rev.plan = plan
        self.multiscaler.update(plan.key, plan.spec, panic_window_s=plan.panic_window_s,
                                algorithm=plan.algorithm)
        self._push_endpoints(rev, self._platform.pods(plan.key))
        self._mark(plan.key)

    async def forget(self, key: RevisionKey) -> None:
        """Stop a revision: out of the activator first, then drain and stop its pods."""
        self._revisions.pop(key, None)
        self._dirty.discard(key)
        self.multiscaler.forget(key)
        self._endpoints.remove_revision(key)
        await self._platform.delete(key)

    def replicas(self, key: RevisionKey) -> int | None:
        """The pods last asked of the platform for a revision (None if not watched)."""
        rev = self._revisions.get(key)
        return None if rev is None else rev.replicas

    def pods_changed(self, key: RevisionKey, pods: tuple[PodInfo, ...]) -> None:
        """The platform's pods of a revision changed: new endpoints, and a pass."""
        rev = self._revisions.get(key)
        if rev is not None:
            self._push_endpoints(rev, pods)
            self._mark(key)

    def scale_of(self, key: RevisionKey) -> RevisionScale | None:
        """The revision's scaling state (None if not watched)."""
        return self._revisions.get(key)

    def stats(self) -> AutoscalingStats:
        """Counters of the work done."""
        return AutoscalingStats(len(self._revisions), self._passes, self._scale_calls,
                                self._flips)

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the multiscaler's loops and the reconcile loop until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.multiscaler.run(), name="multiscaler")
            tg.create_task(self._loop(), name="autoscaling-reconcile")

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            for key, rev in self._revisions.items():
                if rev.recheck_at is not None and rev.recheck_at <= now:
                    rev.recheck_at = None
                    self._dirty.add(key)
            while self._dirty:
                key = min(self._dirty)
                self._dirty.discard(key)
                try:
                    await self._reconcile(key)
                except Exception:  # the edge of one pass: log it, keep scaling the others
                    _log.exception("autoscaling pass for %s failed", key)
            due = [r.recheck_at for r in self._revisions.values() if r.recheck_at is not None]
            await self._wait(min(due) - self._clock.now() if due else None)

    async def _wait(self, timeout_s: float | None) -> None:
        """Until something is marked dirty, or `timeout_s` passes on the Clock."""
        if self._wake.is_set():
            return
        if timeout_s is None:
            await self._wake.wait()
        else:
            await first_of(self._wake.wait(), self._clock.sleep(max(timeout_s, 0.0)))

    def _mark(self, key: RevisionKey) -> None:
        self._dirty.add(key)
        self._wake.set()

    def _on_decision(self, key: RevisionKey, decision: Decision) -> None:
        rev = self._revisions.get(key)
        if rev is not None and decision.desired_pods != rev.desired:
            panic = ", panic mode" if decision.panic else ""
            was = f", was {rev.desired}" if rev.desired >= 0 else ""
            self._on_event("decision", key, f"autoscaler wants {decision.desired_pods} "
                                            f"pod(s){was}{panic}"
                                            f"{_bounds_note(decision.desired_pods, rev.plan)}")
            rev.desired = decision.desired_pods
        self._mark(key)

    async def _reconcile(self, key: RevisionKey) -> None:
        """One reconcile pass for a revision (see the module docstring)."""
        for _ in range(_MAX_ROUNDS):
            rev = self._revisions.get(key)
            decision = self.multiscaler.decision(key)
            if rev is None or decision is None:
                return
            self._passes += 1
            now = self._clock.now()
            ready = sum(1 for p in self._platform.pods(key) if p.ready)
            inputs = ScaleInputs(
                desired=decision.desired_pods,
                excess_burst_capacity=decision.excess_burst_capacity,
                ready_pods=ready, current_replicas=rev.replicas, proxy_since=rev.proxy_since,
                activator_probe_ok=True)
            result = apply_decision(rev.plan.settings, inputs, rev.pa, now=now)
            mode = Mode.SERVE if result.sks_mode is SKSMode.SERVE else Mode.PROXY
            again = result.pa != rev.pa or mode is not rev.mode
            rev.pa, rev.recheck_at = result.pa, result.recheck_at
            if mode is not rev.mode:
                # Into PROXY before pods go away (the gate saw to that); SERVE only with
                # ready pods, which the activator checks itself.
                self._flips += 1
                rev.mode = mode
                rev.proxy_since = now if mode is Mode.PROXY else None
                self._push_endpoints(rev, self._platform.pods(key))
                where = "in the path (proxy)" if mode is Mode.PROXY else "out of the path (serve)"
                self._on_event("mode", key, f"activator {where}")
            if result.replicas is not None and result.replicas != rev.replicas:
                self._on_event("scale", key, f"scaling {rev.replicas} -> {result.replicas} pod(s)")
                rev.replicas = result.replicas
                self._scale_calls += 1
                await self._platform.scale(key, result.replicas)
                again = True
            if not again:
                return

    # -- helpers ------------------------------------------------------------------------

    def _push_endpoints(self, rev: RevisionScale, pods: tuple[PodInfo, ...]) -> None:
        self._endpoints.set_revision(rev.plan.endpoints(endpoint_pods(pods), rev.mode))

    def _ready_pods_source(self, key: RevisionKey) -> Callable[[], list[ReadyPod]]:
        platform = self._platform

        def ready_pods() -> list[ReadyPod]:
            return [ReadyPod(p.address, p.started_at if p.started_at is not None else 0.0)
                    for p in platform.pods(key) if p.ready]
        return ready_pods
