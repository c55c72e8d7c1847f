"""Applying a decision: replicas, PodAutoscaler state, SKS mode and activator count.

This is the pure half of Knative's KPA reconciler (pkg/reconciler/autoscaling/kpa/kpa.go
`ReconcileKind` + `computeActiveCondition` + `computeNumActivators`, and scaler.go
`scale` + `handleScaleToZero`; reference 2.2). The multiscaler callback and the replay
tool call `apply_decision` after each decision and do what the result says.

Inputs, three frozen records:
  * `ScaleSettings`: per-revision knobs (bounds, initial scale, reachability, the
    scale-to-zero timers, TBC and capacities); `ScaleSettings.from_spec` fills most of
    it from a `ScalingSpec` and the `AutoscalerConfig`.
  * `ScaleInputs`: this pass's facts (the decider's desired pods and EBC, ready pods,
    the replicas last applied, since when the activator is in the path, the probe).
  * `PAState`: the PodAutoscaler's Active condition (Active / Activating / Inactive,
    its reason and when it entered it) and whether the scale target was initialized.

Theory of operation
-------------------
1. desired < 0 (no metrics yet) changes nothing unless the PA is Activating.
2. Bounds AFTER the decider's rate limits: min = min_scale (0 if unreachable), raised to
   initial_scale while the target is not yet initialized (reachable only); want =
   clamp(desired, min, max), max 0 meaning unbounded.
3. want == 0 goes through the scale-to-zero gate:
   - enable-scale-to-zero off: want = 1.
   - Activating: allow 0 once activating >= progress_deadline + 30 s (PA -> Inactive
     TimedOut); otherwise report -1 and re-check when that time comes.
   - Active: once active >= stable window, report 0 WITHOUT applying (the PA goes
     Inactive and the SKS to Proxy first; re-check in 3 s if already proxying);
     before that apply 1 and re-check when the window has elapsed.
   - Inactive: the activator must be in the path (probe; skipped when TBC = -1, where it
     always is). Then allow 0 if inactive >= max(grace, retention); wait out the
     retention; else allow 0 once the activator has proxied for the grace period.
4. SKS mode: Serve iff want > 0 and EBC >= 0, else Proxy (also for want = -1).
5. Activators: 2 when TBC = 0, else max(2, ceil((ready * total + max(TBC, 0)) / capacity)).
6. PA state from want, ready and the active threshold (max(min, initial_scale) before the
   target is initialized, then max(min, 1)): want 0 -> Inactive (TimedOut if it was
   Activating, else NoTraffic); ready < threshold -> Activating/Queued; else Active. A
   PA that stays in the same state and reason keeps its `since`.

Worked example (defaults: grace 30 s, stable window 60 s, TBC 211, total 100): the decider
says desired 0, EBC -111 with 1 ready pod; the PA has been Active since t = 100.
  apply_decision(ScaleSettings(), ScaleInputs(desired=0, excess_burst_capacity=-111,
                 ready_pods=1), PAState(activity=Activity.ACTIVE, since=100.0), now=170.0)
  -> desired_scale 0 and replicas None (active 70 s >= 60 s: deactivate, patch nothing),
     PA Inactive/NoTraffic since 170, SKS Proxy, activators ceil((1*100 + 211)/100) = 4.
At t = 171, with the activator proxying since 170 and the probe passing: inactive 1 s <
grace, proxying 1 s, so replicas None and recheck_at = 171 + 29 = 200. At t = 200 the
PA has been inactive for the whole grace period: replicas 0.

Deliberate differences from Knative: the Activating timeout is inclusive (>=) so that
re-checking at the returned `recheck_at` always makes progress; an Inactive PA waiting
out the grace period is re-checked when either the inactivity or the proxying test can
first pass (Knative waits for the proxying one); Knative's PA also waits for the SKS's
private service name before anything else, which Surge has no notion of.
The shell must run `apply_decision` again when the returned PA state or SKS mode differs
from what it passed in (Knative re-reconciles on those status changes), and at
`recheck_at`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from autoscaler.config import AutoscalerConfig, ScalingSpec

# scaler.go activationTimeoutBuffer: lets the revision reconciler report pod failures
# before an activation that never succeeds is scaled away.
ACTIVATION_TIMEOUT_BUFFER_S = 30.0
# scaler.go: an Active PA ready to go to zero whose SKS is already in Proxy produces no
# status change that would bring it back, so it re-checks after this.
PROXY_RECHECK_S = 3.0
# kpa.go minActivators: never fewer, so one activator restart cannot black-hole traffic.
MIN_ACTIVATORS = 2
# Knative's default progress deadline (config-deployment progress-deadline: 600s).
DEFAULT_PROGRESS_DEADLINE_S = 600.0
SCALE_UNKNOWN = -1

REASON_QUEUED = "Queued"
REASON_NO_TRAFFIC = "NoTraffic"
REASON_TIMED_OUT = "TimedOut"


class Activity(enum.Enum):
    """The PodAutoscaler's Active condition: True, Unknown or False."""

    ACTIVE = "Active"
    ACTIVATING = "Activating"
    INACTIVE = "Inactive"


class SKSMode(enum.Enum):
    """Where requests for the revision go: straight to pods, or through the activator."""

    SERVE = "Serve"
    PROXY = "Proxy"


@dataclass(frozen=True, slots=True, kw_only=True)
class PAState:
    """The PA's activity, its reason, when it entered them, and whether scale was first reached."""

    activity: Activity
    since: float
    reason: str = ""
    scale_target_initialized: bool = False

    @classmethod
    def initial(cls, now: float) -> PAState:
        """A new PA: Activating (requests queue until the initial scale is ready)."""
        return cls(activity=Activity.ACTIVATING, since=now, reason=REASON_QUEUED)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleSettings:
    """Per-revision knobs for applying decisions; durations in seconds, max_scale 0 = none."""

    min_scale: int = 0
    max_scale: int = 0
    initial_scale: int = 1
    reachable: bool = True
    enable_scale_to_zero: bool = True
    scale_to_zero_grace_period: float = 30.0
    scale_to_zero_pod_retention_period: float = 0.0
    stable_window: float = 60.0
    progress_deadline: float = DEFAULT_PROGRESS_DEADLINE_S
    target_burst_capacity: float = 211.0
    total_value: float = 100.0
    activator_capacity: float = 100.0

    @classmethod
    def from_spec(
        cls,
        spec: ScalingSpec,
        config: AutoscalerConfig,
        *,
        min_scale: int,
        max_scale: int,
        scale_to_zero_pod_retention_period: float | None = None,
        progress_deadline: float = DEFAULT_PROGRESS_DEADLINE_S,
    ) -> ScaleSettings:
        """Settings from a revision's spec, the ConfigMap, resolved bounds and annotation overrides."""
        retention = scale_to_zero_pod_retention_period
        return cls(
            min_scale=min_scale,
            max_scale=max_scale,
            initial_scale=spec.initial_scale,
            reachable=spec.reachable,
            enable_scale_to_zero=config.enable_scale_to_zero,
            scale_to_zero_grace_period=config.scale_to_zero_grace_period,
            scale_to_zero_pod_retention_period=(
                config.scale_to_zero_pod_retention_period if retention is None else retention),
            stable_window=spec.stable_window,
            progress_deadline=progress_deadline,
            target_burst_capacity=spec.target_burst_capacity,
            total_value=spec.total_value,
            activator_capacity=spec.activator_capacity,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleInputs:
    """This pass's facts: the decision (desired -1 = unknown), pods, and the activator's place."""

    desired: int
    excess_burst_capacity: int
    ready_pods: int
    current_replicas: int | None = None  # last applied; None counts as 1 (Kubernetes' default)
    proxy_since: float | None = None  # when the activator entered the path; None = serving
    activator_probe_ok: bool = False  # the activator answered the probe for this revision


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What to do: patch replicas (None = leave them), re-check time, probe, new PA, SKS mode."""

    desired_scale: int  # what the PA reports as desired; -1 unknown
    replicas: int | None  # set the scale target to this; None = no change to apply
    recheck_at: float | None  # run apply_decision again at this time
    probe_activator: bool  # start probing the activator; re-run when it answers
    pa: PAState
    sks_mode: SKSMode
    activators: int


def num_activators(settings: ScaleSettings, ready_pods: int) -> int:
    """Activators to put in the path: enough to carry the pods' capacity plus the TBC, at least 2."""
    tbc = settings.target_burst_capacity
    if tbc == 0:
        return MIN_ACTIVATORS  # activator only at zero: the minimum keeps it redundant
    capacity = ready_pods * settings.total_value + max(tbc, 0.0)
    return max(MIN_ACTIVATORS, math.ceil(capacity / settings.activator_capacity))


def apply_decision(settings: ScaleSettings, inputs: ScaleInputs, pa: PAState, *, now: float) -> ScaleResult:
    """One reconcile pass: bounds, the scale-to-zero gate, SKS mode, activators and PA state."""
    min_scale = settings.min_scale if settings.reachable else 0
    replicas: int | None = None
    recheck_at: float | None = None
    probe = False
    want = inputs.desired
    if want >= 0 or pa.activity is Activity.ACTIVATING:
        lowest = min_scale
        if settings.initial_scale > 1 and settings.reachable and not pa.scale_target_initialized:
            lowest = max(lowest, settings.initial_scale)
        want = _bounded(want, lowest, settings.max_scale)
        apply = True
        if want == 0:
            want, apply, recheck_at, probe = _scale_to_zero_gate(settings, inputs, pa, now)
        current = 1 if inputs.current_replicas is None else inputs.current_replicas
        if apply and want != current:
            replicas = want

    serve = want > 0 and inputs.excess_burst_capacity >= 0
    return ScaleResult(
        desired_scale=want,
        replicas=replicas,
        recheck_at=recheck_at,
        probe_activator=probe,
        pa=_next_pa_state(settings, pa, want, inputs.ready_pods, min_scale, now),
        sks_mode=SKSMode.SERVE if serve else SKSMode.PROXY,
        activators=num_activators(settings, inputs.ready_pods),
    )


def _bounded(want: int, lowest: int, highest: int) -> int:
    # An unknown (-1) want while Activating becomes the minimum: 0 unless min-scale is set.
    if want < lowest:
        return lowest
    if highest != 0 and want > highest:
        return highest
    return want


def _scale_to_zero_gate(
    settings: ScaleSettings, inputs: ScaleInputs, pa: PAState, now: float
) -> tuple[int, bool, float | None, bool]:
    """(want, apply, recheck_at, probe_activator) for a want of 0."""
    if not settings.enable_scale_to_zero:
        return 1, True, None, False
    in_state_for = now - pa.since
    if pa.activity is Activity.ACTIVATING:
        # Pods that never became ready are given up on only after the deadline.
        timeout = settings.progress_deadline + ACTIVATION_TIMEOUT_BUFFER_S
        if in_state_for >= timeout:
            return 0, True, None, False
        return SCALE_UNKNOWN, False, pa.since + timeout, False
    if pa.activity is Activity.ACTIVE:
        # Go Inactive first (SKS to Proxy), remove the pod only on a later pass, so no
        # request can arrive at a revision with neither pods nor the activator.
        if in_state_for >= settings.stable_window:
            recheck = now + PROXY_RECHECK_S if inputs.proxy_since is not None else None
            return 0, False, recheck, False
        return 1, True, pa.since + settings.stable_window, False
    # Inactive: only with the activator confirmed in the path (always so with TBC -1).
    if settings.target_burst_capacity != -1 and not inputs.activator_probe_ok:
        return 0, False, None, True
    grace = settings.scale_to_zero_grace_period
    retention = settings.scale_to_zero_pod_retention_period if settings.reachable else 0.0
    if in_state_for >= max(grace, retention):
        return 0, True, None, False
    if retention > 0 and in_state_for < retention:
        return 0, False, pa.since + retention, False  # the last pod's hard minimum life
    # The grace period is for the activator's endpoints to propagate; if it has been
    # proxying that long already (often: negative EBC), there is nothing to wait for.
    proxy_for = 0.0 if inputs.proxy_since is None else now - inputs.proxy_since
    if grace - proxy_for <= 0:
        return 0, True, None, False
    # Knative re-checks after the proxy wait only; the inactivity test above may pass
    # sooner, and an early re-check costs nothing.
    return 0, False, min(now + (grace - proxy_for), pa.since + max(grace, retention)), False


def _next_pa_state(
    settings: ScaleSettings, pa: PAState, want: int, ready_pods: int, min_scale: int, now: float
) -> PAState:
    # Knative computes the threshold from the PA before marking it initialized this pass.
    if pa.scale_target_initialized:
        threshold = max(min_scale, 1)
    else:
        threshold = max(min_scale, settings.initial_scale)
    initialized = pa.scale_target_initialized or ready_pods >= threshold

    activity, reason = pa.activity, pa.reason
    if want == 0 or threshold == 0:
        timed_out = pa.activity is Activity.ACTIVATING and threshold > 0
        activity, reason = Activity.INACTIVE, REASON_TIMED_OUT if timed_out else REASON_NO_TRAFFIC
    elif ready_pods < threshold:
        if want > 0 or pa.activity is not Activity.INACTIVE:
            activity, reason = Activity.ACTIVATING, REASON_QUEUED
        else:
            activity, reason = Activity.INACTIVE, REASON_NO_TRAFFIC  # unknown want, stays idle
    elif want > 0 or pa.activity is not Activity.INACTIVE:
        activity, reason = Activity.ACTIVE, ""

    # Like a Kubernetes condition: the transition time moves only when something changes.
    since = pa.since if (activity, reason) == (pa.activity, pa.reason) else now
    return PAState(activity=activity, since=since, reason=reason, scale_target_initialized=initialized)
