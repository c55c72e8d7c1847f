"""Applying decisions: bounds, the scale-to-zero gate, PA state, SKS mode, activator count.

The gate table ports Knative's scaler_test.go (TestScaler, TestDisableScaleToZero) with its
settings: grace 60 s, stable window 5 min, progress deadline 121 s (activation timeout
151 s). The state table ports cases of kpa_test.go TestReconcile (min-scale 11, CC
target 10, TBC 200).
"""

from __future__ import annotations

import pytest

from autoscaler.config import AutoscalerConfig, ScalingSpec
from autoscaler.scaling import (
    Activity,
    PAState,
    ScaleInputs,
    ScaleResult,
    ScaleSettings,
    SKSMode,
    apply_decision,
    num_activators,
)

NOW = 1_000.0
ACTIVE, ACTIVATING, INACTIVE = Activity.ACTIVE, Activity.ACTIVATING, Activity.INACTIVE

GATE = ScaleSettings(
    scale_to_zero_grace_period=60.0,
    stable_window=300.0,
    progress_deadline=121.0,
    target_burst_capacity=200.0,
    total_value=10.0,
)


def settings(base: ScaleSettings = GATE, **changes) -> ScaleSettings:
    """`base` with some fields changed."""
    fields = {name: getattr(base, name) for name in ScaleSettings.__dataclass_fields__}
    fields.update(changes)
    return ScaleSettings(**fields)


def pa(activity: Activity, age: float, *, initialized: bool = False) -> PAState:
    """A PA in `activity` for `age` seconds at NOW."""
    return PAState(activity=activity, since=NOW - age, scale_target_initialized=initialized)


# (settings, desired, current replicas, PA, proxying for (s) or None, probe ok)
#   -> (desired_scale, replicas patched or None, re-check in (s) or None, start probe)
GATE_CASES = [
    pytest.param(GATE, 0, 1, pa(ACTIVE, 299), None, True, (1, None, 1, False),
                 id="active-just-before-stable-window-keeps-one"),
    pytest.param(settings(stable_window=45.0), 0, 1, pa(ACTIVE, 44), None, True, (1, None, 1, False),
                 id="active-just-before-custom-window-keeps-one"),
    pytest.param(settings(stable_window=45.0), 0, 1, pa(ACTIVE, 300), None, True, (0, None, None, False),
                 id="active-past-custom-window-deactivates-without-probe"),
    pytest.param(GATE, 0, 10, pa(ACTIVE, 299), None, True, (1, 1, 1, False),
                 id="active-before-window-scales-down-to-one"),
    pytest.param(GATE, 0, 1, pa(ACTIVE, 300), None, True, (0, None, None, False),
                 id="active-for-stable-window-deactivates-first"),
    pytest.param(GATE, 0, 1, pa(ACTIVE, 300), 10, True, (0, None, 3, False),
                 id="active-for-stable-window-already-proxying-rechecks-in-3s"),
    pytest.param(settings(stable_window=45.0), 0, 1, pa(ACTIVE, 45), None, True, (0, None, None, False),
                 id="active-for-custom-window-deactivates"),
    pytest.param(settings(scale_to_zero_pod_retention_period=0.0), 0, 1, pa(INACTIVE, 60), None, True,
                 (0, 0, None, False), id="inactive-for-grace-zero-retention-scales-to-zero"),
    pytest.param(settings(scale_to_zero_pod_retention_period=120.0), 0, 1, pa(INACTIVE, 60), None, True,
                 (0, None, 60, False), id="inactive-for-grace-waits-out-pod-retention"),
    pytest.param(settings(scale_to_zero_pod_retention_period=60.0), 0, 1, pa(INACTIVE, 60), None, True,
                 (0, 0, None, False), id="inactive-for-grace-and-retention-scales-to-zero"),
    pytest.param(GATE, 0, 1, pa(INACTIVE, 60), None, True, (0, 0, None, False),
                 id="inactive-for-grace-scales-to-zero"),
    pytest.param(GATE, 0, 1, pa(INACTIVE, 59), None, True, (0, None, 1, False),
                 id="inactive-just-before-grace-waits"),
    pytest.param(GATE, 0, 1, pa(INACTIVE, 59), 59, True, (0, None, 1, False),
                 id="inactive-just-before-grace-proxying-briefly-waits"),
    pytest.param(settings(scale_to_zero_pod_retention_period=42.0), 0, 1, pa(INACTIVE, 59), 60, True,
                 (0, 0, None, False), id="proxying-for-grace-after-retention-fast-path"),
    pytest.param(GATE, 0, 1, pa(INACTIVE, 59), 60, True, (0, 0, None, False),
                 id="proxying-for-grace-fast-path"),
    pytest.param(GATE, 0, 1, pa(INACTIVE, 10), 30, True, (0, None, 30, False),
                 id="proxying-part-of-grace-waits-the-rest"),
    pytest.param(settings(target_burst_capacity=-1.0), 0, 1, pa(INACTIVE, 60), None, False,
                 (0, 0, None, False), id="tbc-minus-one-needs-no-activator-probe"),
    pytest.param(GATE, 0, 1, pa(INACTIVE, 60), None, False, (0, None, None, True),
                 id="inactive-activator-not-confirmed-starts-probe"),
    pytest.param(GATE, 0, 1, pa(ACTIVATING, 75.5), None, True, (-1, None, 75.5, False),
                 id="activating-waits-for-activation-timeout"),
    pytest.param(GATE, 0, 1, pa(ACTIVATING, 152), None, True, (0, 0, None, False),
                 id="activating-past-timeout-scales-to-zero"),
    pytest.param(settings(progress_deadline=5.0), 0, 1, pa(ACTIVATING, 36), None, True, (0, 0, None, False),
                 id="activating-past-revision-progress-deadline-scales-to-zero"),
    pytest.param(settings(min_scale=2), 0, 10, pa(INACTIVE, 59), None, True, (2, 2, None, False),
                 id="min-scale-before-grace"),
    pytest.param(settings(min_scale=2), 0, 10, pa(INACTIVE, 60), None, True, (2, 2, None, False),
                 id="min-scale-after-grace"),
    pytest.param(settings(reachable=False, scale_to_zero_pod_retention_period=600.0), 0, 1, pa(INACTIVE, 60),
                 None, True, (0, 0, None, False), id="unreachable-ignores-pod-retention"),
    pytest.param(settings(reachable=False, scale_to_zero_pod_retention_period=600.0), 0, 1, pa(INACTIVE, 59),
                 None, True, (0, None, 1, False), id="unreachable-still-waits-for-grace"),
    pytest.param(settings(reachable=False, min_scale=2), 0, 10, pa(INACTIVE, 60), None, True, (0, 0, None, False),
                 id="unreachable-ignores-min-scale"),
    pytest.param(GATE, 10, 1, pa(ACTIVATING, 0), None, True, (10, 10, None, False), id="scales-up"),
    pytest.param(settings(max_scale=8), 10, 1, pa(ACTIVATING, 0), None, True, (8, 8, None, False),
                 id="scales-up-to-max-scale"),
    pytest.param(GATE, 10, 1, pa(INACTIVE, 30), None, True, (10, 10, None, False), id="scales-up-inactive-revision"),
    pytest.param(GATE, -1, 0, pa(INACTIVE, 0), None, True, (-1, None, None, False),
                 id="no-metrics-no-scale-from-zero"),
    pytest.param(GATE, 1, 0, pa(ACTIVATING, 0), None, True, (1, 1, None, False), id="scales-up-from-zero-to-one"),
    pytest.param(GATE, 10, 0, pa(ACTIVATING, 0), None, True, (10, 10, None, False), id="scales-up-from-zero-to-ten"),
    pytest.param(GATE, -1, 12, pa(ACTIVE, 0), None, True, (-1, None, None, False), id="unknown-desired-does-nothing"),
    pytest.param(GATE, 1, None, pa(ACTIVE, 0), None, True, (1, None, None, False),
                 id="unset-replicas-count-as-one"),
    pytest.param(settings(initial_scale=2), 0, 2, pa(ACTIVE, 120, initialized=True), None, True,
                 (1, 1, 180, False), id="initial-scale-reached-then-scale-down"),
    pytest.param(settings(initial_scale=2), 1, 0, pa(ACTIVATING, 0), None, True, (2, 2, None, False),
                 id="initial-scale-before-initialized"),
    pytest.param(settings(initial_scale=5), 1, 5, pa(ACTIVATING, 0), None, True, (5, None, None, False),
                 id="initial-scale-reached-nothing-to-patch"),
    pytest.param(settings(initial_scale=0), 0, 0, pa(INACTIVE, 0), None, True, (0, None, 60, False),
                 id="initial-scale-zero-waits-for-grace"),
    pytest.param(settings(initial_scale=2, reachable=False), 0, 2, pa(ACTIVE, 120), None, True, (1, 1, 180, False),
                 id="unreachable-ignores-initial-scale"),
    pytest.param(GATE, -1, 0, pa(ACTIVATING, 10), None, True, (-1, None, 141, False),
                 id="activating-without-metrics-waits-for-timeout"),
    pytest.param(settings(min_scale=3), -1, 0, pa(ACTIVATING, 10), None, True, (3, 3, None, False),
                 id="activating-without-metrics-scales-to-min"),
    pytest.param(settings(enable_scale_to_zero=False), 0, 10, pa(ACTIVE, 0), None, True, (1, 1, None, False),
                 id="scale-to-zero-disabled-keeps-one"),
    pytest.param(settings(enable_scale_to_zero=False, min_scale=2), 0, 10, pa(ACTIVE, 0), None, True,
                 (2, 2, None, False), id="scale-to-zero-disabled-min-scale"),
    pytest.param(settings(enable_scale_to_zero=False), -1, 10, pa(ACTIVE, 0), None, True, (-1, None, None, False),
                 id="scale-to-zero-disabled-unknown-desired"),
]


@pytest.mark.parametrize(("cfg", "desired", "current", "state", "proxy_for", "probe_ok", "want"), GATE_CASES)
def test_scale_and_scale_to_zero_gate(cfg, desired, current, state, proxy_for, probe_ok, want):
    inputs = ScaleInputs(
        desired=desired, excess_burst_capacity=0, ready_pods=1, current_replicas=current,
        proxy_since=None if proxy_for is None else NOW - proxy_for, activator_probe_ok=probe_ok,
    )
    got = apply_decision(cfg, inputs, state, now=NOW)
    recheck_in = None if got.recheck_at is None else got.recheck_at - NOW
    assert (got.desired_scale, got.replicas, recheck_in, got.probe_activator) == want


RECONCILE = settings(min_scale=11)
UNDER, OVER = 10, 12

# (settings, desired, EBC, ready, current replicas, PA)
#   -> (replicas, PA activity, reason, initialized, SKS mode, activators)
STATE_CASES = [
    pytest.param(settings(), 0, 0, 0, 0, pa(INACTIVE, 3600, initialized=True),
                 (None, INACTIVE, "NoTraffic", True, SKSMode.PROXY, 2), id="steady-not-serving"),
    pytest.param(settings(), 0, 0, 0, 1, pa(INACTIVE, 3600, initialized=True),
                 (0, INACTIVE, "NoTraffic", True, SKSMode.PROXY, 2), id="steady-not-serving-scales-to-zero"),
    pytest.param(settings(), 0, 0, 1, 1, pa(ACTIVE, 3600),
                 (None, INACTIVE, "NoTraffic", True, SKSMode.PROXY, 3), id="from-serving-to-proxy"),
    pytest.param(settings(), 0, 0, 1, 1, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVE, "", True, SKSMode.SERVE, 3), id="scaling-to-zero-not-stable-long-enough"),
    pytest.param(settings(), 0, 0, 1, 1, pa(ACTIVATING, 3600),
                 (0, INACTIVE, "TimedOut", True, SKSMode.PROXY, 3), id="activation-failure-times-out"),
    pytest.param(RECONCILE, -1, 0, UNDER, UNDER, pa(INACTIVE, 10, initialized=True),
                 (None, INACTIVE, "NoTraffic", True, SKSMode.PROXY, 3), id="unknown-underscaled-inactive-no-op"),
    pytest.param(RECONCILE, 1, 0, UNDER, UNDER, pa(INACTIVE, 10, initialized=True),
                 (11, ACTIVATING, "Queued", True, SKSMode.SERVE, 3), id="want-one-underscaled-inactive-activates"),
    pytest.param(RECONCILE, 2, 0, UNDER, UNDER, pa(ACTIVATING, 10),
                 (11, ACTIVATING, "Queued", False, SKSMode.SERVE, 3), id="underscaled-activating-to-min-scale"),
    pytest.param(RECONCILE, 11, 0, UNDER, UNDER, pa(ACTIVE, 10, initialized=True),
                 (11, ACTIVATING, "Queued", True, SKSMode.SERVE, 3), id="underscaled-active-back-to-activating"),
    pytest.param(RECONCILE, 0, 0, OVER, OVER, pa(INACTIVE, 10, initialized=True),
                 (11, ACTIVE, "", True, SKSMode.SERVE, 4), id="overscaled-inactive-to-min-scale-active"),
    pytest.param(RECONCILE, OVER, 0, OVER, OVER, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVE, "", True, SKSMode.SERVE, 4), id="over-min-scale-for-real-no-op"),
    pytest.param(RECONCILE, 1, 0, OVER, OVER, pa(ACTIVE, 10, initialized=True),
                 (11, ACTIVE, "", True, SKSMode.SERVE, 4), id="desired-below-min-scale-scales-to-min"),
    pytest.param(settings(), -1, 0, 0, 0, pa(INACTIVE, 10, initialized=True),
                 (None, INACTIVE, "NoTraffic", True, SKSMode.PROXY, 2), id="scaled-to-zero-no-scale-data"),
    pytest.param(settings(), 11, -42, 1, 11, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVE, "", True, SKSMode.PROXY, 3), id="negative-ebc-keeps-proxy"),
    pytest.param(settings(), 11, 1, 1, 11, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVE, "", True, SKSMode.SERVE, 3), id="non-negative-ebc-serves"),
    pytest.param(settings(), 11, 0, 1, 11, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVE, "", True, SKSMode.SERVE, 3), id="zero-ebc-serves"),
    pytest.param(settings(min_scale=11, initial_scale=20), 11, -42, 11, 11, pa(ACTIVATING, 10),
                 (20, ACTIVATING, "Queued", False, SKSMode.PROXY, 4), id="initial-scale-not-reached-still-activating"),
    pytest.param(settings(initial_scale=20), 11, -42, 20, 11, pa(ACTIVATING, 10),
                 (20, ACTIVE, "", True, SKSMode.PROXY, 4), id="initial-scale-reached-marks-active"),
    pytest.param(settings(initial_scale=0), -1, 0, 0, 0, pa(ACTIVATING, 10),
                 (None, INACTIVE, "NoTraffic", True, SKSMode.PROXY, 2), id="initial-scale-zero-goes-inactive"),
    pytest.param(settings(initial_scale=0), -1, 0, 0, 0, pa(ACTIVATING, 10, initialized=True),
                 (None, ACTIVATING, "Queued", True, SKSMode.PROXY, 2), id="initial-scale-zero-stays-at-zero"),
    pytest.param(settings(initial_scale=0), 2, -42, 2, 2, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVE, "", True, SKSMode.PROXY, 3), id="initial-scale-zero-scales-up"),
    pytest.param(settings(min_scale=2, reachable=False), 1, 0, 1, 1, pa(ACTIVATING, 10),
                 (None, ACTIVE, "", True, SKSMode.SERVE, 3), id="unreachable-active-without-min-scale-pods"),
    pytest.param(settings(min_scale=2), 1, 0, 1, 1, pa(ACTIVATING, 10),
                 (2, ACTIVATING, "Queued", False, SKSMode.SERVE, 3), id="reachable-needs-min-scale-pods-to-be-active"),
    pytest.param(settings(), -1, 0, 0, 0, pa(ACTIVE, 10, initialized=True),
                 (None, ACTIVATING, "Queued", True, SKSMode.PROXY, 2), id="unknown-active-without-pods-activating"),
]


@pytest.mark.parametrize(("cfg", "desired", "ebc", "ready", "current", "state", "want"), STATE_CASES)
def test_pa_state_sks_mode_and_activators(cfg, desired, ebc, ready, current, state, want):
    inputs = ScaleInputs(desired=desired, excess_burst_capacity=ebc, ready_pods=ready, current_replicas=current,
                         proxy_since=NOW - 3600, activator_probe_ok=True)
    got = apply_decision(cfg, inputs, state, now=NOW)
    assert (got.replicas, got.pa.activity, got.pa.reason, got.pa.scale_target_initialized,
            got.sks_mode, got.activators) == want


@pytest.mark.parametrize(("ready", "tbc", "want"), [
    pytest.param(0, 200.0, 2, id="no-pods-minimum"),
    pytest.param(1, 200.0, 3, id="one-pod-plus-tbc"),
    pytest.param(100, 0.0, 2, id="tbc-zero-minimum"),
    pytest.param(5, -1.0, 5, id="tbc-unlimited-covers-pods-only"),
    pytest.param(15, 200.0, 17, id="many-pods"),
])
def test_num_activators(ready, tbc, want):
    cfg = ScaleSettings(total_value=100.0, target_burst_capacity=tbc, activator_capacity=100.0)
    assert num_activators(cfg, ready) == want


def test_pa_keeps_since_while_state_and_reason_hold():
    cfg = settings()
    state = pa(ACTIVE, 10, initialized=True)
    keep = apply_decision(cfg, ScaleInputs(desired=3, excess_burst_capacity=0, ready_pods=3, current_replicas=3),
                          state, now=NOW)
    assert keep.pa == state
    moved = apply_decision(cfg, ScaleInputs(desired=3, excess_burst_capacity=0, ready_pods=0, current_replicas=3),
                           state, now=NOW)
    assert (moved.pa.activity, moved.pa.since) == (ACTIVATING, NOW)


def test_worked_example_from_active_to_zero():
    """The module docstring's example: deactivate at 170, wait the grace period, remove at 200."""
    cfg = ScaleSettings()
    idle = ScaleInputs(desired=0, excess_burst_capacity=-111, ready_pods=1)
    first = apply_decision(cfg, idle, PAState(activity=ACTIVE, since=100.0), now=170.0)
    assert first == ScaleResult(
        desired_scale=0, replicas=None, recheck_at=None, probe_activator=False,
        pa=PAState(activity=INACTIVE, since=170.0, reason="NoTraffic", scale_target_initialized=True),
        sks_mode=SKSMode.PROXY, activators=4,
    )
    proxying = ScaleInputs(desired=0, excess_burst_capacity=-111, ready_pods=1, proxy_since=170.0,
                           activator_probe_ok=True)
    second = apply_decision(cfg, proxying, first.pa, now=171.0)
    assert (second.replicas, second.recheck_at, second.pa) == (None, 200.0, first.pa)
    third = apply_decision(cfg, proxying, second.pa, now=second.recheck_at)
    assert (third.replicas, third.recheck_at, third.pa) == (0, None, first.pa)


def test_initial_pa_is_activating_and_queued():
    assert PAState.initial(NOW) == PAState(activity=ACTIVATING, since=NOW, reason="Queued")


def test_settings_from_spec_and_config():
    spec = ScalingSpec(stable_window=90.0, reachable=False, initial_scale=3, target_burst_capacity=-1.0,
                       total_value=10.0, activator_capacity=50.0)
    config = AutoscalerConfig(enable_scale_to_zero=False, scale_to_zero_grace_period=45.0,
                              scale_to_zero_pod_retention_period=20.0)
    assert ScaleSettings.from_spec(spec, config, min_scale=1, max_scale=9) == ScaleSettings(
        min_scale=1, max_scale=9, initial_scale=3, reachable=False, enable_scale_to_zero=False,
        scale_to_zero_grace_period=45.0, scale_to_zero_pod_retention_period=20.0, stable_window=90.0,
        progress_deadline=600.0, target_burst_capacity=-1.0, total_value=10.0, activator_capacity=50.0,
    )
    overridden = ScaleSettings.from_spec(spec, config, min_scale=0, max_scale=0,
                                         scale_to_zero_pod_retention_period=0.0, progress_deadline=30.0)
    assert (overridden.scale_to_zero_pod_retention_period, overridden.progress_deadline) == (0.0, 30.0)
