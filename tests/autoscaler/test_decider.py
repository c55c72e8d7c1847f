"""The KPA decider, tick by tick on a fake time axis (Knative autoscaler_test.go cases + ours).

Knative's tests use a spec with 75% utilization, rates 10/10, panic threshold 2 and a 60 s
stable window; `knative_spec` builds the same. Expected EBCs are worked out by hand from
floor(ready * target / 0.75 - TBC - observed panic).
"""

from __future__ import annotations

import dataclasses
import doctest
from typing import NamedTuple

import pytest

import autoscaler.decider
from autoscaler.config import ScalingSpec
from autoscaler.decider import Decider, Decision, Observation, initial_excess_burst_capacity

T0 = 1_000.0


def knative_spec(target: float, tbc: float, **overrides) -> ScalingSpec:
    """The DeciderSpec of Knative's autoscaler_test.go, with overrides."""
    fields = dict(
        metric="concurrency",
        target_value=target,
        total_value=target / 0.75,
        target_burst_capacity=tbc,
        panic_threshold=2.0,
        max_scale_up_rate=10.0,
        max_scale_down_rate=10.0,
        stable_window=60.0,
        scale_down_delay=0.0,
        reachable=True,
        activation_scale=0,
        activator_capacity=150.0,
        initial_scale=1,
    )
    fields.update(overrides)
    return ScalingSpec(**fields)


class Tick(NamedTuple):
    """One row: at T0+t with `ready` pods observing (stable, panic) -> (desired, ebc, panic).

    `obs` None means "no data"; `ready` None means the ready count could not be read;
    `want` None means the tick must be invalid. `update` swaps the spec before the tick.
    """

    t: float
    ready: int | None
    obs: tuple[float, float] | None
    want: tuple[int, int, bool] | None
    update: ScalingSpec | None = None


def run(decider: Decider, ticks: list[Tick]) -> None:
    for tick in ticks:
        if tick.update is not None:
            decider.update(tick.update)
        observed = None if tick.obs is None else Observation(*tick.obs)
        got = decider.decide(T0 + tick.t, ready_pods=tick.ready, observed=observed)
        want = None if tick.want is None else Decision(*tick.want)
        assert got == want, f"at t={tick.t}s"


SPEC_T10_TBC100 = knative_spec(10, 100)
SPEC_DELAY = knative_spec(10, 100, panic_threshold=100.0, scale_down_delay=300.0)

# (spec, ready pods when the decider is created, ticks)
SEQUENCES = [
    pytest.param(knative_spec(10, 100), 1, [Tick(0, 1, (50, 50), (5, -137, True))],
                 id="stable-no-change-one-pod-panics-on-ratio"),
    pytest.param(knative_spec(10, 100), 1, [Tick(0, 5, (50, 50), (5, -84, False))],
                 id="stable-no-change-already-scaled"),
    pytest.param(knative_spec(10, 0), 1, [Tick(0, 1, (50, 49), (5, 0, True))], id="ebc-zero-when-tbc-zero"),
    pytest.param(knative_spec(181, -1), 1, [Tick(0, 1, (21, 26), (1, -1, False))], id="ebc-minus-one-when-tbc-unlimited"),
    pytest.param(knative_spec(10, 84), 1, [Tick(0, 1, (50, 100), (10, -171, True))], id="panic-doubles-pod-count"),
    pytest.param(knative_spec(1, 1982, max_scale_up_rate=1.1), 1, [Tick(0, 2, (3, 3.1), (3, -1983, True))],
                 id="small-scale-up-rate-still-adds-a-pod"),
    pytest.param(knative_spec(10, 1982, max_scale_down_rate=1.1), 1, [Tick(0, 100, (1, 1), (90, -650, False))],
                 id="max-scale-down-rate"),
    pytest.param(knative_spec(10, 1982, max_scale_down_rate=1.1, reachable=False), 1,
                 [Tick(0, 100, (1, 1), (1, -650, False))], id="unreachable-has-no-scale-down-limit"),
    pytest.param(knative_spec(10, 101), 1, [
        Tick(0, 1, (50, 10), (5, -98, False)),
        Tick(2, 1, (100, 10), (10, -98, False)),
    ], id="stable-increase-concurrency"),
    pytest.param(knative_spec(10, 101, metric="rps"), 1, [
        Tick(0, 1, (50, 50), (5, -138, True)),
        Tick(2, 1, (100, 99), (10, -187, True)),
    ], id="stable-increase-rps"),
    pytest.param(knative_spec(10, 98), 1, [
        Tick(0, 8, (100, 100), (10, -92, False)),
        Tick(2, 8, (50, 50), (5, -42, False)),
    ], id="stable-decrease"),
    pytest.param(knative_spec(10, 75), 1, [
        Tick(0, 1, (1, 0), (1, -62, False)),
        Tick(2, 1, (0, 0), (0, -62, False)),
    ], id="no-traffic-scales-to-zero"),
    pytest.param(knative_spec(10, 75, activation_scale=2), 1, [
        Tick(0, 1, (0, 0), (0, -62, False)),
        Tick(2, 1, (1, 0), (2, -62, False)),
        Tick(4, 1, (0, 1), (0, -63, False)),
    ], id="activation-scale-lifts-any-nonzero-want"),
    pytest.param(knative_spec(10, 75, activation_scale=5), 1, [
        Tick(0, 1, (0, 30), (5, -92, True)),
    ], id="activation-scale-applies-in-panic"),
    pytest.param(knative_spec(1, 98), 1, [
        Tick(0, 10, (11, 25), (25, -110, True)),
        Tick(30, 40, (30, 41), (41, -86, True)),
        Tick(62, 55, (50, 56), (50, -81, False)),
    ], id="unpanic-after-slow-increase"),
    pytest.param(knative_spec(1, 98), 1, [
        Tick(0, 10, (11, 25), (25, -110, True)),
        Tick(30, 40, (30, 80), (80, -125, True)),
    ], id="extend-panic-window"),
    pytest.param(knative_spec(10, 93), 1, [
        Tick(0, 1, (100, 100), (10, -180, True)),
        Tick(1, 10, (100, 1000), (100, -960, True)),
        Tick(31, 10, (1, 1), (100, 39, True)),
        Tick(61, 10, (1, 1), (100, 39, True)),
        Tick(62, 10, (1, 1), (1, 39, False)),
    ], id="no-scale-down-in-panic-then-unpanic-after-stable-window"),
    pytest.param(knative_spec(10, 100), 1, [
        Tick(0, 1, (0, 20), (2, -107, True)),
        Tick(60, 2, (0, 0), (2, -74, True)),
        Tick(60.5, 2, (0, 0), (0, -74, False)),
    ], id="panic-exit-is-strictly-after-the-window"),
    pytest.param(knative_spec(1, 10, max_scale_up_rate=1.1), 1, [
        Tick(0, 2, (0, 4.1), (3, -12, True)),
    ], id="panic-entry-uses-unclamped-dppc"),
    pytest.param(knative_spec(10, 10), 1, [
        Tick(0, 0, (0, 20), (2, -30, True)),
    ], id="panic-ratio-divides-by-at-least-one-pod"),
    pytest.param(knative_spec(1, 101), 1, [
        Tick(0, 1, (6, 6), (6, -106, True)),
        Tick(2, 6, (36, 36), (36, -129, True)),
        Tick(3, 36, (216, 216), (216, -269, True)),
        Tick(3, 216, (1296, 1296), (1296, -1109, True)),
        Tick(4, 1296, (1296, 1296), (1296, 331, True)),
    ], id="panic-tracks-exponential-growth"),
    pytest.param(knative_spec(10, 61), 1, [
        Tick(0, 1, (1000, 1001), (10, -1049, True)),
        Tick(2, 10, (1000, 1001), (100, -929, True)),
    ], id="max-scale-up-rate"),
    pytest.param(knative_spec(10, 61), 1, [
        Tick(0, 100, (1, 1), (10, 1271, False)),
        Tick(2, 10, (1, 1), (1, 71, False)),
    ], id="max-scale-down-rate-per-tick"),
    pytest.param(knative_spec(10, 81), 1, [
        Tick(0, 0, (1000, 888), (10, -969, True)),
    ], id="zero-ready-pods-rate-limits-from-one-ebc-from-zero"),
    pytest.param(knative_spec(10, 77), 1, [
        Tick(0, 1, (100, 101), (10, -165, True)),
        Tick(2, 10, (100, 101), (100, -159, True),
             update=knative_spec(1, 71, activator_capacity=21.0)),
    ], id="update-target-takes-effect"),
    pytest.param(ScalingSpec(target_value=70.0, total_value=100.0), 1, [
        Tick(0, 2, (350, 350), (5, -361, True)),
    ], id="float-ceil-350-over-70-is-5"),
    pytest.param(knative_spec(7, 211, total_value=10.0), 1, [
        Tick(0, 1, (14, 14), (2, -215, True)),
        Tick(2, 2, (14.1, 14.1), (3, -206, True)),
    ], id="target-utilization-sets-per-pod-target"),
    pytest.param(knative_spec(10, 211, total_value=100.0), 1, [
        Tick(0, 10, (100, 50), (10, 739, False)),
    ], id="ebc-positive-with-enough-pods"),
    pytest.param(knative_spec(10, 100), 1, [
        Tick(0, 0, (0, 0), (0, -100, False)),
    ], id="ebc-uses-raw-ready-count"),
    pytest.param(knative_spec(10, 100), 1, [
        Tick(0, 1, None, None),
        Tick(2, 1, (50, 50), (5, -137, True)),
    ], id="no-data-is-invalid"),
    pytest.param(knative_spec(10, 100), 1, [
        Tick(0, None, (50, 50), None),
    ], id="ready-count-error-is-invalid"),
    pytest.param(knative_spec(10, -1), 1, [
        Tick(0, 1, None, (0, -1, False)),
        Tick(2, 4, None, (0, -1, False)),
    ], id="tbc-minus-one-reads-no-data-as-zero"),
    pytest.param(knative_spec(10, -1, max_scale_down_rate=2.0), 1, [
        Tick(0, 4, None, (2, -1, False)),
    ], id="tbc-minus-one-no-data-still-rate-limited"),
    pytest.param(knative_spec(10, -1), 1, [
        Tick(0, None, None, None),
    ], id="tbc-minus-one-ready-count-error-is-invalid"),
    pytest.param(knative_spec(10, 100), 3, [
        Tick(0, 3, (0, 0), (3, -60, True)),
        Tick(60, 3, (0, 0), (3, -60, True)),
        Tick(61, 3, (0, 0), (0, -60, False)),
    ], id="start-in-panic-holds-ready-pods-for-a-window"),
    pytest.param(knative_spec(10, 100), 1, [
        Tick(0, 1, (0, 0), (0, -87, False)),
    ], id="start-calm-with-one-pod"),
    pytest.param(SPEC_DELAY, 0, [
        Tick(2, 0, (40, 40), (4, -140, False)),
        Tick(300, 0, (0, 0), (4, -100, False)),
        Tick(302, 0, (0, 0), (0, -100, False)),
        # "gradual": each value holds for the delay after it was last the maximum.
        Tick(540, 0, (40, 40), (4, -140, False)),
        Tick(600, 0, (30, 30), (4, -130, False)),
        Tick(660, 0, (0, 0), (4, -100, False)),
        Tick(840, 0, (0, 0), (3, -100, False)),
        Tick(900, 0, (0, 0), (0, -100, False)),
    ], id="scale-down-delay"),
    pytest.param(SPEC_DELAY, 0, [
        Tick(2, 0, (40, 40), (4, -140, False)),
        Tick(60, 0, (0, 0), (4, -100, False)),
        Tick(62, 0, (0, 0), (0, -100, False), update=dataclasses.replace(SPEC_DELAY, reachable=False)),
    ], id="scale-down-delay-off-when-unreachable"),
    pytest.param(dataclasses.replace(SPEC_DELAY, scale_down_delay=0.0), 0, [
        Tick(0, 0, (40, 40), (4, -140, False)),
        Tick(0.5, 0, (20, 20), (2, -120, False)),
    ], id="zero-scale-down-delay-is-no-window"),
    pytest.param(SPEC_DELAY, 0, [
        Tick(2, 0, (40, 40), (4, -140, False)),
        Tick(10, 0, (0, 0), (4, -100, False), update=dataclasses.replace(SPEC_DELAY, scale_down_delay=60.0)),
        Tick(60, 0, (0, 0), (4, -100, False)),
        Tick(64, 0, (0, 0), (0, -100, False)),
    ], id="update-shrinks-delay-window-keeping-its-max"),
    pytest.param(dataclasses.replace(SPEC_DELAY, scale_down_delay=0.0), 0, [
        Tick(2, 0, (40, 40), (4, -140, False)),
        Tick(4, 0, (0, 0), (0, -100, False), update=SPEC_DELAY),
        Tick(6, 0, (30, 30), (3, -130, False)),
        Tick(8, 0, (0, 0), (3, -100, False)),
    ], id="update-adds-delay-window"),
    pytest.param(SPEC_DELAY, 0, [
        Tick(2, 0, (40, 40), (4, -140, False)),
        Tick(4, 0, (0, 0), (0, -100, False), update=dataclasses.replace(SPEC_DELAY, scale_down_delay=0.0)),
    ], id="update-removes-delay-window"),
    pytest.param(knative_spec(10, 100), 3, [
        Tick(30, 3, (0, 0), (3, -30, True), update=knative_spec(5, 50)),
        Tick(61, 3, (0, 0), (0, -30, False)),
    ], id="update-keeps-panic-state"),
]


@pytest.mark.parametrize(("spec", "created_with", "ticks"), SEQUENCES)
def test_decide_over_time(spec, created_with, ticks):
    run(Decider(spec, now=T0, ready_pods=created_with), ticks)


def test_panic_time_moves_only_on_over_threshold_ticks():
    decider = Decider(knative_spec(1, 98), now=T0, ready_pods=1)
    decider.decide(T0, ready_pods=10, observed=Observation(11, 25))
    assert (decider.panic_time, decider.max_panic_pods) == (T0, 25)
    decider.decide(T0 + 30, ready_pods=40, observed=Observation(30, 41))
    assert (decider.panic_time, decider.max_panic_pods) == (T0, 41), "below threshold keeps the start"
    decider.decide(T0 + 40, ready_pods=40, observed=Observation(30, 80))
    assert (decider.panic_time, decider.max_panic_pods) == (T0 + 40, 80), "over threshold extends"
    decider.decide(T0 + 101, ready_pods=80, observed=Observation(30, 30))
    assert (decider.in_panic, decider.panic_time, decider.max_panic_pods) == (False, None, 0)


def test_invalid_tick_changes_no_state():
    decider = Decider(knative_spec(10, 100), now=T0, ready_pods=4)
    assert decider.decide(T0 + 120, ready_pods=4, observed=None) is None
    assert decider.decide(T0 + 120, ready_pods=None, observed=Observation(0, 0)) is None
    assert (decider.panic_time, decider.max_panic_pods) == (T0, 4)


@pytest.mark.parametrize(("ready", "in_panic", "max_panic_pods"), [
    pytest.param(0, False, 0, id="zero-pods-calm"),
    pytest.param(None, False, 0, id="unreadable-count-calm"),
    pytest.param(1, False, 1, id="one-pod-calm"),
    pytest.param(2, True, 2, id="two-pods-start-in-panic"),
])
def test_start_in_panic_with_more_than_one_ready_pod(ready, in_panic, max_panic_pods):
    decider = Decider(knative_spec(100, 11), now=T0, ready_pods=ready)
    assert (decider.in_panic, decider.max_panic_pods) == (in_panic, max_panic_pods)
    assert decider.panic_time == (T0 if in_panic else None)


@pytest.mark.parametrize(("spec", "want"), [
    pytest.param(ScalingSpec(), -111, id="defaults-start-behind-activator"),
    pytest.param(ScalingSpec(target_burst_capacity=0.0), 0, id="tbc-zero"),
    pytest.param(ScalingSpec(target_burst_capacity=-1.0), -1, id="tbc-unlimited"),
    pytest.param(ScalingSpec(initial_scale=3), 89, id="initial-scale-covers-tbc"),
    pytest.param(knative_spec(10, 100), -86, id="truncates-toward-zero"),
])
def test_initial_excess_burst_capacity(spec, want):
    assert initial_excess_burst_capacity(spec) == want
    assert Decider(spec, now=T0).initial_decision == Decision(-1, want, False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_observation_rejects_non_finite_values(bad):
    with pytest.raises(ValueError, match="finite"):
        Observation(bad, 0.0)
    with pytest.raises(ValueError, match="finite"):
        Observation(0.0, bad)


def test_module_docstring_example_runs():
    result = doctest.testmod(autoscaler.decider)
    assert result.attempted > 0 and result.failed == 0
