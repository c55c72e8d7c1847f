"""Trace replay: a per-second load trace through the live autoscaler's code, offline.

Nothing here decides anything. Stats go into the same `MetricCollection` the live
autoscaler records into, the same `Decider` turns them into desired pods, and the same
`apply_decision` applies bounds, the scale-to-zero gate, the PA state and the SKS mode.
This module only plays the parts of the world around them: the trace is the load, a
list of pods becomes ready after a start delay, and the activator is in the path when
the SKS says Proxy.

Model, one step per trace second t (times are trace seconds; `now = t`):

1. Pods. A pod requested at step t serves from second t + `pod_start_delay_s` (>= 1).
   A pod removed at step t still serves second t and, with `drain_s` D, D more seconds
   (its endpoint is still programmed); it is gone from second t + 1 + D. Not-yet-ready
   pods are removed first, newest first, as a ReplicaSet does. `ready(t)` counts the
   serving pods, draining ones included, and is what the decider and totals see.
2. Load. The trace value v(t) is the revision-wide total (concurrency or rps, per the
   spec's metric) in second t; the load is open-loop (how it is served does not change
   it). It is recorded as one Stat at second t: from the scraper when pods are ready
   (the activator's share and the pods' proxied share cancel, so the bucket gets the
   total either way, reference 3.5), from the activator when none are. Nothing is
   recorded when nobody would report: no ready pods (or no scrape target, TBC -1) and
   v(t) = 0, since the activator drops idle revisions. The windows can then go empty,
   which is the collector's "no data" (2.4) and keeps the last decision.
3. Decider. It runs every `tick_interval_s` (t = 2, 4, ...), and at once on a poke: a
   stat through the activator (no ready pod, or SKS in Proxy) with load while the
   current desired scale is <= 0: `collector.is_poke`, the condition `Multiscaler.ingest`
   pokes on.
4. Reconcile, every second, with the latest decision: `apply_decision` with the
   replicas last applied, ready(t), the PA state kept across steps, and the activator
   in the path exactly while the SKS is in Proxy (its probe succeeds then, and
   `proxy_since` is when the SKS last entered Proxy). Knative reconciles on events and
   at the re-check times the gate returns; every second is the same thing, at most 1 s
   late. When a pass changes the PA state or the SKS mode it runs again at once, as
   Knative re-reconciles on its own status changes. New replicas go to the pods (1).
5. The revision starts as a new one: PA Activating, SKS Proxy, the Deployment created
   with the initial scale (Knative's MakeDeployment), the decider at desired -1.

Totals, with capacity c per pod = containerConcurrency for a concurrency trace with
CC > 0, else the spec's per-pod total (the soft target before utilization: 100, or the
`target` annotation; for rps the rps total, 200 by default):

* pod_seconds: sum over t of ready(t).
* under_provisioned_seconds: seconds with v(t) > ready(t) * c.
* queued_requests: sum over t of max(0, v(t) - ready(t) * c); for concurrency that is
  request-seconds spent waiting (queued concurrency is part of the measured total), for
  rps the requests over capacity in each second (not carried to the next one).
* cold_starts: times ready goes from 0 to > 0 after a zero-pod stretch that had load.
* panic_seconds (seconds the decider was in panic), max_ready_pods.

Worked example (defaults; CC 10 so target 7 and c = 10; start delay 2 s): 0 until
t = 10, then 70 until t = 39, then 0 until t = 200. The first pod serves from t = 2 and
the PA goes Active. At t = 10 the SKS is in Proxy (EBC = 1 * 10 - 211 - 0 < 0) and
desired is 0, so the load pokes the decider: the 6 s panic window reads 70 / 6 = 11.67,
ceil(11.67 / 7) = 2 pods for 1 ready, 2 / 1 >= 2.0: panic, desired 2. Panic never
scales down and each tick sees more of the step: desired 2, 5, 9, 10 at t = 10, 12, 14,
16, and ten pods serve from t = 18. Seconds 10..15 are under-provisioned (1, 1, 2, 2,
5, 5 pods for 70): 60 + 60 + 50 + 50 + 20 + 20 = 260 request-seconds queued. Panic
ends at t = 74 (a stable window after the last over tick, 12); the count then follows
the falling stable average, never below half per tick: 5, 4, 3, 2, 1. At t = 100 the stable window has forgotten the step: desired 0,
the PA (Active for 98 s >= 60 s) goes Inactive, and as the activator has proxied for
longer than the 30 s grace the last pod goes at once: 0 pods from t = 101.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from dataplane.stat import Stat

from .collector import MetricCollection, is_poke
from .config import (ANNOTATION_KEYS, ANNOTATION_PREFIX, CLASS_ANNOTATION, KPA_CLASS,
                     METRIC_ANNOTATION, AutoscalerConfig, ScalingSpec, resolve_aggregation_algorithm,
                     resolve_class, resolve_scale_bounds, resolve_scale_to_zero_pod_retention,
                     resolve_spec, resolve_windows, validate_annotations)
from .decider import TICK_INTERVAL_S, Decider
from .scaling import PAState, ScaleInputs, ScaleSettings, SKSMode, apply_decision

__all__ = [
    "METRICS", "ReplayError", "ReplayOptions", "ReplayResult", "ReplayTotals", "RevisionSetup",
    "TickRecord", "Trace", "TraceError", "capacity_per_pod", "format_json", "format_report", "parse_trace", "replay", "resolve_revision",
]

METRICS = ("concurrency", "rps")
# A week of seconds: the per-second series and the tick table stay a few MB.
MAX_TRACE_SECONDS = 7 * 86_400
# Passes of apply_decision per second: Active -> Inactive -> scaled to zero is the
# longest chain of status changes (3 passes); one more shows it has settled.
_MAX_PASSES = 4
_WHOLE = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class ReplayError(ValueError):
    """Bad replay input: `.key` names the setting, flag or file line, `.reason` the rule."""

    def __init__(self, key: str, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


class TraceError(ReplayError):
    """A bad trace file: `.line` is the 1-based line number."""

    def __init__(self, name: str, line: int, reason: str) -> None:
        self.line = line
        super().__init__(f"{name} line {line}", reason)


@dataclass(frozen=True, slots=True)
class Trace:
    """A load trace: `values[t]` is the revision-wide total in second t (gaps are 0)."""

    metric: str
    values: tuple[float, ...]


def parse_trace(text: str, *, name: str = "trace") -> Trace:
    """Parse `t,<metric>` CSV: a header, then `second,value` rows in increasing time."""
    lines = text.lstrip("\ufeff").splitlines()
    header = [cell.strip().lower() for cell in lines[0].split(",")] if lines else []
    if len(header) != 2 or header[0] not in ("t", "second") or header[1] not in METRICS:
        shown = repr(lines[0]) if lines else "an empty file"
        raise TraceError(name, 1, f"header is {shown}; expected 't,concurrency' or 't,rps'")
    points: dict[int, float] = {}
    last = -1
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # a blank line (the final newline, say) carries nothing
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 2:
            raise TraceError(name, number, f"{len(cells)} columns in {line!r}; expected 'second,value'")
        if not _WHOLE.fullmatch(cells[0]):
            raise TraceError(name, number, f"second {cells[0]!r} is not a whole number >= 0")
        second = int(cells[0])
        if second <= last:
            raise TraceError(name, number, f"second {second} is not after second {last}; "
                             "rows must be in increasing time order")
        if second >= MAX_TRACE_SECONDS:
            raise TraceError(name, number, f"second {second} is beyond the {MAX_TRACE_SECONDS} s limit")
        if not _NUMBER.fullmatch(cells[1]):
            raise TraceError(name, number, f"value {cells[1]!r} is not a number >= 0")
        points[second] = float(cells[1])
        last = second
    if last < 0:
        raise TraceError(name, max(len(lines), 1), "no data rows after the header")
    values = [0.0] * (last + 1)
    for second, value in points.items():
        values[second] = value
    return Trace(header[1], tuple(values))


@dataclass(frozen=True, slots=True)
class RevisionSetup:
    """One revision as the autoscaler resolves it: spec, windows, algorithm, scale settings."""

    spec: ScalingSpec
    panic_window_s: float
    algorithm: str
    settings: ScaleSettings
    container_concurrency: int = 0


def resolve_revision(config: AutoscalerConfig, annotations: Mapping[str, str] | None = None, *,
                     container_concurrency: int = 0) -> RevisionSetup:
    """Validate the annotations as admission would and resolve them; ReplayError if refused."""
    anns = dict(annotations or {})
    for key in anns:
        if key not in ANNOTATION_KEYS:
            # validate_annotations ignores keys it does not know; in a tuning tool a typo
            # that silently changes nothing would be worse than an error.
            raise ReplayError(key, f"not an annotation the autoscaler reads (expected "
                              f"{ANNOTATION_PREFIX}<setting>, e.g. {ANNOTATION_PREFIX}target)")
    if not 0 <= container_concurrency <= 1000:  # config-defaults container-concurrency-max-limit
        raise ReplayError("containerConcurrency", f"{container_concurrency} must be in [0, 1000]")
    problems = validate_annotations(anns, config)
    if problems:
        first = problems[0]
        raise ReplayError(first.keys[0], "; ".join(str(p) for p in problems))
    if (cls := resolve_class(config, anns)) != KPA_CLASS:
        key = CLASS_ANNOTATION if CLASS_ANNOTATION in anns else "pod-autoscaler-class"
        raise ReplayError(key, f"{cls!r}: replay simulates the KPA ({KPA_CLASS}) only")
    spec = resolve_spec(config, anns, container_concurrency=container_concurrency)
    lo, hi = resolve_scale_bounds(config, anns)
    settings = ScaleSettings.from_spec(
        spec, config, min_scale=lo, max_scale=hi,
        scale_to_zero_pod_retention_period=resolve_scale_to_zero_pod_retention(config, anns))
    return RevisionSetup(spec=spec, panic_window_s=resolve_windows(config, anns)[1],
                         algorithm=resolve_aggregation_algorithm(anns), settings=settings,
                         container_concurrency=container_concurrency)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOptions:
    """The world around the autoscaler: tick interval, pod start delay, drain (whole seconds)."""

    tick_interval_s: int = int(TICK_INTERVAL_S)
    pod_start_delay_s: int = 2
    drain_s: int = 0

    def __post_init__(self) -> None:
        for flag, value, lowest in (("--tick-interval", self.tick_interval_s, 1),
                                    ("--pod-start-delay", self.pod_start_delay_s, 1),
                                    ("--drain", self.drain_s, 0)):
            if not isinstance(value, int) or value < lowest:
                raise ReplayError(flag, f"{value!r} must be a whole number of seconds >= {lowest} "
                                  "(the replay steps one second at a time)")


@dataclass(frozen=True, slots=True)
class TickRecord:
    """One decider run: observed values (None: no data), its answer, and the state after."""

    t: int
    stable: float | None
    panic: float | None
    desired: int
    replicas: int
    ready: int
    panic_mode: bool
    mode: str
    pa: str
    poke: bool


@dataclass(frozen=True, slots=True)
class ReplayTotals:
    """What the trace cost under this config; see the module docstring for definitions."""

    seconds: int
    pod_seconds: int
    under_provisioned_seconds: int
    queued_requests: float
    cold_starts: int
    panic_seconds: int
    max_ready_pods: int


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Ticks, totals and per-second series (index = trace second) of one replay."""

    setup: RevisionSetup
    options: ReplayOptions
    capacity_per_pod: float
    ticks: tuple[TickRecord, ...]
    totals: ReplayTotals
    load: tuple[float, ...]
    ready: tuple[int, ...]
    replicas: tuple[int, ...]
    desired: tuple[int, ...]
    panic: tuple[bool, ...]

    @property
    def metric(self) -> str:
        """The scaling metric ("concurrency" or "rps")."""
        return self.setup.spec.metric

    def to_json(self) -> dict:
        """A JSON-ready dict: spec, options, ticks and totals (docs/replay.md lists the fields)."""
        spec, st = self.setup.spec, self.setup.settings
        totals = asdict(self.totals)
        totals["queued_requests"] = round(self.totals.queued_requests, 6)
        return {
            "spec": {
                "metric": spec.metric, "target": spec.target_value, "total": spec.total_value,
                "container_concurrency": self.setup.container_concurrency,
                "stable_window_s": spec.stable_window, "panic_window_s": self.setup.panic_window_s,
                "panic_threshold": spec.panic_threshold, "target_burst_capacity": spec.target_burst_capacity,
                "algorithm": self.setup.algorithm, "min_scale": st.min_scale, "max_scale": st.max_scale,
                "initial_scale": st.initial_scale, "scale_to_zero_grace_period_s": st.scale_to_zero_grace_period,
                "scale_to_zero_pod_retention_period_s": st.scale_to_zero_pod_retention_period,
            },
            "options": {
                "tick_interval_s": self.options.tick_interval_s,
                "pod_start_delay_s": self.options.pod_start_delay_s,
                "drain_s": self.options.drain_s, "capacity_per_pod": self.capacity_per_pod,
            },
            "ticks": [asdict(tick) for tick in self.ticks],
            "totals": totals | {"queued_unit": _queued_unit(spec.metric)},
        }


def capacity_per_pod(spec: ScalingSpec, container_concurrency: int) -> float:
    """What one ready pod can take: CC for concurrency with CC > 0, else the per-pod total."""
    if spec.metric == "concurrency" and container_concurrency > 0:
        return float(container_concurrency)
    return spec.total_value


class _Pods:
    """The revision's pods: starting (ready at a second), ready, draining (serving until a second)."""

    __slots__ = ("_start_delay", "_drain", "_starting", "_ready", "_draining")

    def __init__(self, options: ReplayOptions) -> None:
        self._start_delay, self._drain = options.pod_start_delay_s, options.drain_s
        self._starting: collections.deque[int] = collections.deque()  # ready-from seconds, ascending
        self._draining: collections.deque[int] = collections.deque()  # gone-from seconds, ascending
        self._ready = 0

    def serving(self, t: int) -> int:
        """Pods serving second t: ready ones and those still draining."""
        while self._starting and self._starting[0] <= t:
            self._starting.popleft()
            self._ready += 1
        while self._draining and self._draining[0] <= t:
            self._draining.popleft()
        return self._ready + len(self._draining)

    def scale_to(self, replicas: int, t: int) -> None:
        """Apply a new replica count at step t: start pods, or remove unready pods first."""
        current = len(self._starting) + self._ready
        if replicas >= current:
            self._starting.extend([t + self._start_delay] * (replicas - current))
            return
        drop = current - replicas
        while drop and self._starting:
            self._starting.pop()  # the newest unready pod goes first
            drop -= 1
        self._ready -= drop
        self._draining.extend([t + 1 + self._drain] * drop)


def _stat(metric: str, load: float, via_activator: bool) -> Stat:
    # One stat carries the second's total; who sends it only names it (reference 3.5).
    name = "activator" if via_activator else "service-scraper"
    if metric == "rps":
        return Stat(pod_name=name, request_count=load)
    return Stat(pod_name=name, average_concurrent_requests=load)


def replay(trace: Trace, setup: RevisionSetup, options: ReplayOptions = ReplayOptions()) -> ReplayResult:
    """Run the trace through collection, decider and decision applier; the ticks and totals."""
    spec, settings = setup.spec, setup.settings
    if trace.metric != spec.metric:
        raise ReplayError(METRIC_ANNOTATION, f"the trace measures {trace.metric} but the revision scales "
                          f"on {spec.metric}; pass --annotation metric={trace.metric} or a "
                          f"t,{spec.metric} trace")
    capacity = capacity_per_pod(spec, setup.container_concurrency)
    collection = MetricCollection(
        stable_window_s=spec.stable_window, panic_window_s=setup.panic_window_s, metric=spec.metric,
        algorithm=setup.algorithm, has_scrape_target=spec.target_burst_capacity != -1)
    decider = Decider(spec, now=0.0, ready_pods=0)
    status = decider.initial_decision
    pods = _Pods(options)
    replicas = spec.initial_scale  # Knative creates the Deployment at the initial scale
    pods.scale_to(replicas, 0)
    pa, mode, proxy_since = PAState.initial(0.0), SKSMode.PROXY, 0.0
    ticks: list[TickRecord] = []
    series: dict[str, list] = {"ready": [], "replicas": [], "desired": [], "panic": []}
    pod_s = under_s = cold = panic_s = max_ready = 0
    queued = 0.0
    waiting = False  # load arrived while no pod was ready, and is still waiting for one

    for t, load in enumerate(trace.values):
        now = float(t)
        ready = pods.serving(t)
        via_activator = ready == 0 or mode is SKSMode.PROXY
        if load > 0 or (ready > 0 and collection.has_scrape_target):
            collection.record(now, _stat(spec.metric, load, via_activator))
        # The activator's stat carries concurrency whenever requests arrive, also for an
        # rps trace (where this replay records only the request rate).
        concurrency = load if spec.metric == "concurrency" else float(load > 0)
        poke = via_activator and is_poke(status.desired_pods, concurrency)
        ticked = t > 0 and t % options.tick_interval_s == 0
        observed = None
        if poke or ticked:
            observed = collection.observe(now)
            decision = decider.decide(now, ready_pods=ready, observed=observed)
            status = decision if decision is not None else status
        for _ in range(_MAX_PASSES):
            inputs = ScaleInputs(desired=status.desired_pods, excess_burst_capacity=status.excess_burst_capacity,
                                 ready_pods=ready, current_replicas=replicas, proxy_since=proxy_since,
                                 activator_probe_ok=mode is SKSMode.PROXY)
            result = apply_decision(settings, inputs, pa, now=now)
            if result.replicas is not None:
                replicas = result.replicas
                pods.scale_to(replicas, t)
            settled = result.pa == pa and result.sks_mode is mode
            if result.sks_mode is not mode:
                mode, proxy_since = result.sks_mode, (now if result.sks_mode is SKSMode.PROXY else None)
            pa = result.pa
            if settled:
                break
        if poke or ticked:
            ticks.append(TickRecord(
                t=t, stable=None if observed is None else observed.stable,
                panic=None if observed is None else observed.panic, desired=status.desired_pods,
                replicas=replicas, ready=ready, panic_mode=decider.in_panic, mode=mode.value,
                pa=pa.activity.value, poke=poke))

        pod_s += ready
        max_ready = max(max_ready, ready)
        panic_s += decider.in_panic
        excess = load - ready * capacity
        if excess > 0:
            under_s += 1
            queued += excess
        if ready == 0 and load > 0:
            waiting = True
        elif ready > 0 and waiting:
            cold, waiting = cold + 1, False
        for name, value in (("ready", ready), ("replicas", replicas), ("desired", status.desired_pods),
                            ("panic", decider.in_panic)):
            series[name].append(value)

    totals = ReplayTotals(seconds=len(trace.values), pod_seconds=pod_s, under_provisioned_seconds=under_s,
                          queued_requests=queued, cold_starts=cold, panic_seconds=panic_s,
                          max_ready_pods=max_ready)
    return ReplayResult(setup=setup, options=options, capacity_per_pod=capacity, ticks=tuple(ticks),
                        totals=totals, load=trace.values, ready=tuple(series["ready"]),
                        replicas=tuple(series["replicas"]), desired=tuple(series["desired"]),
                        panic=tuple(series["panic"]))


def _queued_unit(metric: str) -> str:
    return "requests" if metric == "rps" else "request-seconds"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_json(result: ReplayResult) -> str:
    """`result.to_json()` as text: indented, one tick per line so long traces stay compact."""
    data = result.to_json()
    ticks = data.pop("ticks")
    head = json.dumps(data, indent=2)
    rows = ",\n".join("    " + json.dumps(tick) for tick in ticks)
    return head[:-2] + ',\n  "ticks": [\n' + rows + ("\n  ]\n}\n" if rows else "]\n}\n")


def format_report(result: ReplayResult, *, ticks: bool = True) -> str:
    """The human-readable replay: a settings line, the tick table (optional), the totals."""
    spec, opts, tot = result.setup.spec, result.options, result.totals
    lines = [
        f"{spec.metric} trace, {tot.seconds} s: target {spec.target_value:g} per pod (total "
        f"{spec.total_value:g}), capacity {result.capacity_per_pod:g} per pod, stable window "
        f"{spec.stable_window:g}s, panic window {result.setup.panic_window_s:g}s, tick "
        f"{opts.tick_interval_s}s, pod start {opts.pod_start_delay_s}s, drain {opts.drain_s}s",
    ]
    if ticks:
        lines.append(f"{'t':>7} {'stable':>10} {'panic':>10} {'desired':>8} {'replicas':>8} "
                     f"{'ready':>6}  {'panic':<5} {'mode':<5}  pa")
        for r in result.ticks:
            note = "  (poke)" if r.poke else ""
            lines.append(f"{r.t:>7} {_num(r.stable):>10} {_num(r.panic):>10} {r.desired:>8} "
                         f"{r.replicas:>8} {r.ready:>6}  {'yes' if r.panic_mode else 'no':<5} "
                         f"{r.mode:<5}  {r.pa}{note}")
    lines.append(
        f"totals: pod-seconds {tot.pod_seconds}, under-provisioned {tot.under_provisioned_seconds} s, "
        f"queued {tot.queued_requests:.6g} {_queued_unit(spec.metric)}, cold starts {tot.cold_starts}, "
        f"panic {tot.panic_seconds} s, max ready pods {tot.max_ready_pods}")
    return "\n".join(lines) + "\n"
