"""The Knative Pod Autoscaler decider: how many pods one revision wants, one tick at a time.

Theory of operation (Knative `pkg/autoscaler/scaling/autoscaler.go`, reference 2.1)
-------------------------------------------------------------------------------------
Every tick (2 s, or at once on a poke) the shell reads the ready-pod count and the
revision-wide observed totals over the stable and panic windows, then calls
`Decider.decide(now, ready_pods=..., observed=...)`. No I/O happens here; `now` is the
only notion of time.

1. Rate limits. With ready_f = max(1, ready): at most ceil(max_scale_up_rate * ready_f)
   pods, at least floor(ready_f / max_scale_down_rate) (0 when the revision is
   unreachable, so a routed-away revision may drop straight to zero).
2. Wanted pods per window: dspc = ceil(stable / target), dppc = ceil(panic / target),
   each clamped into the rate limits; an activation scale A > 1 lifts any non-zero want
   to at least A.
3. Panic. The tick is "over" when dppc / ready_f >= panic_threshold (the UNclamped dppc).
   An over tick enters panic or moves `panic_time` to now; panic ends on the first
   non-over tick more than one stable window after the last over tick. While panicking
   the answer is max(stable, panic) and never below the highest answer given during this
   panic (`max_panic_pods`): panic never scales down.
4. Scale-down delay (reachable revisions only): the answer goes into a max window in
   2 s buckets and the window's maximum over the last `scale_down_delay` is returned.
5. Excess burst capacity (EBC) = floor(ready * total - TBC - observed panic) with the RAW
   ready count and the per-pod TOTAL (not the target); 0 when TBC is 0 (activator only
   at zero), -1 when TBC is -1 (activator always in the path).

Worked example (CC 0 so target 70 and total 100, TBC 211, rates 1000/2, threshold 2.0):
2 ready pods, observed 350 in both windows. max_up = 2000, max_down = 1,
dspc = dppc = ceil(350 / 70) = 5; 5 / 2 = 2.5 >= 2 so panic starts; desired = 5 and
max_panic_pods = 5. EBC = floor(2 * 100 - 211 - 350) = -361 < 0: keep the activator.
If the load then drops to 0, desired stays 5 for the next 60 s (panic), and after that
each tick may at most halve it:

>>> from autoscaler.config import ScalingSpec
>>> decider = Decider(ScalingSpec(target_value=70.0, total_value=100.0), now=1000.0)
>>> decider.decide(1002.0, ready_pods=2, observed=Observation(350.0, 350.0))
Decision(desired_pods=5, excess_burst_capacity=-361, panic=True)
>>> decider.decide(1030.0, ready_pods=5, observed=Observation(0.0, 0.0)).desired_pods
5
>>> decider.decide(1063.0, ready_pods=5, observed=Observation(0.0, 0.0))  # calm: 5 // 2
Decision(desired_pods=2, excess_burst_capacity=289, panic=False)
>>> decider.decide(1064.0, ready_pods=2, observed=None) is None            # no data
True

Arithmetic follows Knative's float64 + math.Ceil/Floor exactly (Python floats are
IEEE doubles): ceil(350 / 70) is 5, never 6.

No data (reference 2.4): `observed=None` makes the tick invalid (`None`, no state
changes) -- except when TBC is -1. Then the pods are never scraped, the collector has
no scrape target, and an empty window means "no traffic", so this module substitutes 0
for both windows. The substitution lives here because the decider is the one component
that holds the revision's TBC on every tick, so the collector can stay TBC-agnostic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.config import ScalingSpec
from autoscaler.windows import MaxWindow

# Knative's tickInterval; it is also the bucket width of the scale-down-delay window.
TICK_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class Observation:
    """Revision-wide observed totals (concurrency or rps) over the stable and panic windows."""

    stable: float
    panic: float

    def __post_init__(self) -> None:
        # ceil(inf) raises and ceil(nan) is meaningless: refuse them at the boundary.
        if not (math.isfinite(self.stable) and math.isfinite(self.panic)):
            raise ValueError(f"observation must be finite, got stable={self.stable} panic={self.panic}")


@dataclass(frozen=True, slots=True)
class Decision:
    """One tick's answer: desired pods, excess burst capacity, and whether in panic."""

    desired_pods: int
    excess_burst_capacity: int
    panic: bool


_NO_TRAFFIC = Observation(0.0, 0.0)


def initial_excess_burst_capacity(spec: ScalingSpec) -> int:
    """EBC reported before the first valid tick: TBC if it is -1 or 0, else initial_scale*total - TBC.

    Knative (multiscaler.go `createScaler`) truncates toward zero here (Go's int32 of a
    float64), unlike the per-tick floor; `int()` does the same. With defaults:
    1 * 100 - 211 = -111, so a new revision starts with the activator in the path.
    """
    tbc = spec.target_burst_capacity
    if tbc in (-1, 0):
        return int(tbc)
    return int(spec.initial_scale * spec.total_value - tbc)


def _new_delay_window(scale_down_delay: float) -> MaxWindow | None:
    # Knative keeps no window at all for a zero delay: a one-bucket window is not the
    # same thing, since two ticks in one 2 s bucket would return the larger, not the latest.
    if scale_down_delay <= 0:
        return None
    return MaxWindow(scale_down_delay, TICK_INTERVAL_S)


class Decider:
    """The per-revision KPA decider: panic state plus the scale-down-delay window."""

    __slots__ = ("_spec", "_panic_time", "_max_panic_pods", "_delay_window", "_last_recorded_at")

    def __init__(self, spec: ScalingSpec, *, now: float, ready_pods: int | None = 0) -> None:
        ready = ready_pods or 0  # Knative reads a failed count at creation as 0
        self._spec = spec
        # Metric history is lost when the autoscaler (re)starts; a revision already
        # running more than one pod starts in panic so it holds its size until the
        # windows have data (Knative `newAutoscaler`).
        self._panic_time: float | None = now if ready > 1 else None
        self._max_panic_pods = ready
        self._delay_window = _new_delay_window(spec.scale_down_delay)
        self._last_recorded_at: float | None = None

    @property
    def spec(self) -> ScalingSpec:
        """The spec in force."""
        return self._spec

    @property
    def in_panic(self) -> bool:
        """Whether the decider is in panic mode."""
        return self._panic_time is not None

    @property
    def panic_time(self) -> float | None:
        """The time of the last over-threshold tick (or of start-up in panic); None when calm."""
        return self._panic_time

    @property
    def max_panic_pods(self) -> int:
        """The highest answer given during the current panic (the no-scale-down ratchet)."""
        return self._max_panic_pods

    @property
    def initial_decision(self) -> Decision:
        """The status before the first valid tick: desired -1 and the initial EBC."""
        return Decision(-1, initial_excess_burst_capacity(self._spec), self.in_panic)

    def update(self, spec: ScalingSpec) -> None:
        """Replace the spec, keeping the panic state and the scale-down-delay history."""
        old_delay = self._spec.scale_down_delay
        self._spec = spec
        if spec.scale_down_delay == old_delay:
            return
        old_window = self._delay_window
        self._delay_window = _new_delay_window(spec.scale_down_delay)
        # Knative never resizes its window; we do, and carry the maximum still in force
        # over as if recorded at the last tick, so a config change cannot cause an early
        # scale-down. Erring late: it then lasts one new delay from that tick.
        if self._delay_window is not None and old_window is not None and self._last_recorded_at is not None:
            self._delay_window.record(self._last_recorded_at, old_window.current())

    def decide(self, now: float, *, ready_pods: int | None, observed: Observation | None) -> Decision | None:
        """One tick: the decision at `now`, or None when the tick is invalid (nothing changes)."""
        spec = self._spec
        if ready_pods is None:
            return None  # the ready count could not be read (not NotFound): Knative's invalid result
        if observed is None:
            if spec.target_burst_capacity != -1:
                return None  # no data yet: keep the last decision
            observed = _NO_TRAFFIC  # TBC -1: nothing is scraped, an empty window means idle

        # Zero ready pods still allow growth: the rate limits work from at least one pod.
        ready_f = max(1, ready_pods)
        max_up = math.ceil(spec.max_scale_up_rate * ready_f)
        max_down = math.floor(ready_f / spec.max_scale_down_rate) if spec.reachable else 0

        dspc = math.ceil(observed.stable / spec.target_value)
        dppc = math.ceil(observed.panic / spec.target_value)
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        if spec.activation_scale > 1:
            # Any traffic at all means at least the activation scale (e.g. warm pool of 3).
            if dspc > 0:
                stable_pods = max(stable_pods, spec.activation_scale)
            if dppc > 0:
                panic_pods = max(panic_pods, spec.activation_scale)

        # The threshold compares the unclamped want with the pods we have: a 1.1x scale-up
        # cap must not hide a surge from the panic test.
        if dppc / ready_f >= spec.panic_threshold:
            self._panic_time = now
        elif self._panic_time is not None and now > self._panic_time + spec.stable_window:
            # A full stable window has passed since the last surge tick: the surge is now
            # inside the stable average, which can take over.
            self._panic_time = None
            self._max_panic_pods = 0

        desired = stable_pods
        if self._panic_time is not None:
            # The stable average can exceed the panic one (load falling); provision for both.
            desired = max(stable_pods, panic_pods, self._max_panic_pods)
            self._max_panic_pods = desired

        if spec.reachable and self._delay_window is not None:
            self._delay_window.record(now, desired)
            self._last_recorded_at = now
            desired = int(self._delay_window.current())

        return Decision(desired, self._excess_burst_capacity(ready_pods, observed.panic), self.in_panic)

    def _excess_burst_capacity(self, ready_pods: int, observed_panic: float) -> int:
        tbc = self._spec.target_burst_capacity
        if tbc == 0:
            return 0
        if tbc < 0:
            return -1
        # Raw ready count (0 pods means 0 capacity) and the per-pod total, not the target.
        return math.floor(ready_pods * self._spec.total_value - tbc - observed_panic)

    def __repr__(self) -> str:
        return (
            f"Decider(panic_time={self._panic_time}, max_panic_pods={self._max_panic_pods}, "
            f"delay_window={self._delay_window is not None}, spec={self._spec!r})"
        )
