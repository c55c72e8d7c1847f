"""Properties of the decider and the decision applier over generated specs and traffic."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from autoscaler.config import ScalingSpec
from autoscaler.decider import Decider, Observation
from autoscaler.scaling import Activity, PAState, ScaleInputs, ScaleSettings, apply_decision

T0 = 1_000.0
PROPERTY = hsettings(max_examples=100, deadline=None)

load = st.floats(min_value=0.0, max_value=5_000.0, allow_nan=False)
observations = st.builds(Observation, load, load)


@st.composite
def specs(draw, *, delay: bool) -> ScalingSpec:
    """A valid ScalingSpec; with `delay` False it has no scale-down delay."""
    target = draw(st.floats(min_value=0.5, max_value=200.0))
    return ScalingSpec(
        target_value=target,
        total_value=target / draw(st.floats(min_value=0.1, max_value=1.0)),
        target_burst_capacity=draw(st.sampled_from([-1.0, 0.0, 10.0, 211.0, 1000.0])),
        panic_threshold=draw(st.floats(min_value=1.1, max_value=10.0)),
        max_scale_up_rate=draw(st.floats(min_value=1.01, max_value=1000.0)),
        max_scale_down_rate=draw(st.floats(min_value=1.01, max_value=10.0)),
        stable_window=float(draw(st.integers(min_value=6, max_value=120))),
        scale_down_delay=float(draw(st.integers(min_value=0, max_value=300))) if delay else 0.0,
        reachable=draw(st.booleans()),
        activation_scale=draw(st.integers(min_value=0, max_value=5)),
    )


# (seconds since the previous tick, observation)
ticks = st.lists(st.tuples(st.floats(min_value=0.1, max_value=40.0), observations), min_size=1, max_size=30)


@PROPERTY
@given(spec=specs(delay=False), start_ready=st.integers(min_value=0, max_value=50), steps=ticks)
def test_one_tick_never_exceeds_the_rate_limits(spec, start_ready, steps):
    # A platform that delivers exactly what was asked: next tick's ready = this desired.
    decider = Decider(spec, now=T0, ready_pods=start_ready)
    now, ready = T0, start_ready
    for dt, obs in steps:
        now += dt
        decision = decider.decide(now, ready_pods=ready, observed=obs)
        ready_f = max(1, ready)
        ceiling = max(math.ceil(spec.max_scale_up_rate * ready_f), spec.activation_scale)
        assert decision.desired_pods <= ceiling, f"grew {ready} -> {decision.desired_pods}"
        if spec.reachable:
            floor = math.floor(ready_f / spec.max_scale_down_rate)
            assert decision.desired_pods >= floor, f"shrank {ready} -> {decision.desired_pods}"
        ready = decision.desired_pods


@PROPERTY
@given(spec=specs(delay=False), start_ready=st.integers(min_value=0, max_value=50),
       steps=st.lists(st.tuples(st.floats(min_value=0.1, max_value=40.0), observations,
                                st.integers(min_value=0, max_value=200)), min_size=2, max_size=30))
def test_desired_never_decreases_while_in_panic(spec, start_ready, steps):
    decider = Decider(spec, now=T0, ready_pods=start_ready)
    now, previous = T0, None
    for dt, obs, ready in steps:
        now += dt
        decision = decider.decide(now, ready_pods=ready, observed=obs)
        if previous is not None and previous.panic and decision.panic:
            assert decision.desired_pods >= previous.desired_pods
        previous = decision


@PROPERTY
@given(spec=specs(delay=True), start_ready=st.integers(min_value=0, max_value=50),
       steps=st.lists(st.tuples(st.floats(min_value=0.1, max_value=40.0), observations,
                                st.integers(min_value=0, max_value=200)), min_size=2, max_size=30))
def test_panic_ratchet_holds_under_scale_down_delay(spec, start_ready, steps):
    # The delay window may release a pre-panic peak during a panic, but never below the
    # panic's own high-water mark, which itself never falls while the panic lasts.
    decider = Decider(spec, now=T0, ready_pods=start_ready)
    now, mark = T0, None
    for dt, obs, ready in steps:
        now += dt
        decision = decider.decide(now, ready_pods=ready, observed=obs)
        if not decision.panic:
            mark = None
            continue
        assert decision.desired_pods >= decider.max_panic_pods
        assert mark is None or decider.max_panic_pods >= mark
        mark = decider.max_panic_pods


@PROPERTY
@given(spec=specs(delay=True), start_ready=st.integers(min_value=0, max_value=50),
       steps=st.lists(st.tuples(st.floats(min_value=0.0, max_value=40.0), observations,
                                st.integers(min_value=0, max_value=200)), min_size=1, max_size=20))
def test_same_inputs_same_decisions(spec, start_ready, steps):
    one, two = (Decider(spec, now=T0, ready_pods=start_ready) for _ in range(2))
    now = T0
    for dt, obs, ready in steps:
        now += dt
        assert one.decide(now, ready_pods=ready, observed=obs) == two.decide(now, ready_pods=ready, observed=obs)


@st.composite
def scale_settings(draw) -> ScaleSettings:
    """Valid settings: max 0 (unbounded) or at least min."""
    min_scale = draw(st.integers(min_value=0, max_value=20))
    max_scale = draw(st.one_of(st.just(0), st.integers(min_value=max(min_scale, 1), max_value=40)))
    return ScaleSettings(
        min_scale=min_scale,
        max_scale=max_scale,
        initial_scale=draw(st.integers(min_value=0, max_value=30)),
        reachable=draw(st.booleans()),
        enable_scale_to_zero=draw(st.booleans()),
        scale_to_zero_grace_period=draw(st.floats(min_value=0.0, max_value=120.0)),
        scale_to_zero_pod_retention_period=draw(st.floats(min_value=0.0, max_value=300.0)),
        stable_window=float(draw(st.integers(min_value=6, max_value=300))),
        progress_deadline=draw(st.floats(min_value=1.0, max_value=900.0)),
        target_burst_capacity=draw(st.sampled_from([-1.0, 0.0, 211.0])),
    )


pa_states = st.builds(
    lambda activity, age, reason, initialized: PAState(
        activity=activity, since=T0 - age, reason=reason, scale_target_initialized=initialized),
    st.sampled_from(list(Activity)),
    st.floats(min_value=0.0, max_value=2_000.0),
    st.sampled_from(["", "Queued", "NoTraffic", "TimedOut"]),
    st.booleans(),
)
scale_inputs = st.builds(
    ScaleInputs,
    desired=st.integers(min_value=-1, max_value=100),
    excess_burst_capacity=st.integers(min_value=-500, max_value=500),
    ready_pods=st.integers(min_value=0, max_value=100),
    current_replicas=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
    proxy_since=st.one_of(st.none(), st.floats(min_value=T0 - 2_000.0, max_value=T0)),
    activator_probe_ok=st.booleans(),
)


@PROPERTY
@given(cfg=scale_settings(), inputs=scale_inputs, pa=pa_states)
def test_applied_replicas_stay_within_bounds(cfg, inputs, pa):
    result = apply_decision(cfg, inputs, pa, now=T0)
    # Unreachable revisions ignore min-scale; until the target first reaches it, the
    # initial scale raises the minimum. An initial scale above max-scale is not rejected
    # by Knative's validation; its clamp then lands on one of the two ends.
    lowest = cfg.min_scale if cfg.reachable else 0
    if cfg.reachable and cfg.initial_scale > 1 and not pa.scale_target_initialized:
        lowest = max(lowest, cfg.initial_scale)
    highest = cfg.max_scale or math.inf
    for value in (result.replicas, result.desired_scale):
        if value is None or value == -1:
            continue  # nothing to apply, or not known yet (no metrics / still activating)
        assert min(lowest, highest) <= value <= max(lowest, highest)
    if result.replicas is not None:
        assert result.replicas == result.desired_scale
        assert result.replicas != (1 if inputs.current_replicas is None else inputs.current_replicas)
    if result.replicas == 0:
        assert cfg.enable_scale_to_zero, "scaled to zero with scale-to-zero disabled"
    if result.recheck_at is not None:
        assert result.recheck_at >= T0, "a re-check in the past would spin"
