"""Resolving config + annotations + CC into the decider's spec, windows and bounds.

Cases from reference 1.4 and Knative's target_test.go, decider_test.go, metric_test.go.
"""

from __future__ import annotations

import dataclasses

import pytest

from autoscaler.config import (
    HPA_CLASS,
    LEGACY_ANNOTATIONS,
    AutoscalerConfig,
    ScalingSpec,
    resolve_aggregation_algorithm,
    resolve_initial_scale,
    resolve_metric,
    resolve_scale_bounds,
    resolve_scale_to_zero_pod_retention,
    resolve_spec,
    resolve_windows,
)

A = "autoscaling.knative.dev/"
DEFAULT = AutoscalerConfig()


def config(**changes) -> AutoscalerConfig:
    return dataclasses.replace(DEFAULT, **changes)


# (container concurrency, annotations, config, total, target): reference 1.4's worked table
WORKED_TARGETS = [
    pytest.param(0, {}, DEFAULT, 100.0, 70.0, id="cc0-nothing-set"),
    pytest.param(10, {}, DEFAULT, 10.0, 7.0, id="cc10"),
    pytest.param(10, {A + "target": "50"}, DEFAULT, 10.0, 7.0, id="cc10-target50-capped-at-cc"),
    pytest.param(10, {A + "target": "5"}, DEFAULT, 5.0, 3.5, id="cc10-target5"),
    pytest.param(0, {A + "target": "10"}, DEFAULT, 10.0, 7.0, id="cc0-target10-times-tu"),
    pytest.param(0, {A + "metric": "rps"}, DEFAULT, 200.0, 140.0, id="rps-nothing-set"),
    pytest.param(0, {A + "metric": "rps", A + "target": "10"}, DEFAULT, 10.0, 7.0, id="rps-target10"),
    pytest.param(0, {A + "metric": "rps"}, config(container_concurrency_target_fraction=0.5), 200.0, 140.0,
                 id="rps-ignores-configmap-percentage"),
    pytest.param(10, {A + "metric": "rps", A + "target": "50"}, DEFAULT, 50.0, 35.0, id="rps-target-not-capped-by-cc"),
    pytest.param(0, {A + "target-utilization-percentage": "50"}, DEFAULT, 100.0, 50.0, id="tu-annotation"),
    pytest.param(0, {A + "targetUtilizationPercentage": "50"}, DEFAULT, 100.0, 50.0, id="tu-annotation-camel-case"),
    pytest.param(0, {A + "target": "0.001"}, DEFAULT, 0.001, 0.01, id="target-floor-0.01"),
]

# Knative's target_test.go runs with fraction 1.0 (rps TU stays 0.7).
KN = config(container_concurrency_target_fraction=1.0)
KNATIVE_TARGETS = [
    pytest.param(0, {}, KN, 100.0, 100.0, id="defaults"),
    pytest.param(0, {}, config(container_concurrency_target_fraction=0.8), 100.0, 80.0, id="default-cc-80pct"),
    pytest.param(0, {}, config(container_concurrency_target_fraction=0.3, container_concurrency_target_default=2),
                 2.0, 0.6, id="non-default-cc-and-tu"),
    pytest.param(12, {A + "target-utilization-percentage": "75"}, config(container_concurrency_target_fraction=0.8),
                 12.0, 9.0, id="cc12-tu-annotation-75"),
    pytest.param(10, {}, config(container_concurrency_target_fraction=0.8), 10.0, 8.0, id="cc10-80pct"),
    pytest.param(1, {}, config(container_concurrency_target_fraction=0.8), 1.0, 0.8, id="cc1-80pct"),
    pytest.param(1, {}, KN, 1.0, 1.0, id="cc1"),
    pytest.param(10, {}, KN, 10.0, 10.0, id="cc10"),
    pytest.param(0, {A + "target": "1"}, KN, 1.0, 1.0, id="target1"),
    pytest.param(0, {A + "target": "1"}, config(container_concurrency_target_fraction=0.001), 1.0, 0.01,
                 id="target1-tu-0.1pct-floored"),
    pytest.param(0, {A + "target": "1"}, config(container_concurrency_target_fraction=0.75), 1.0, 0.75,
                 id="target1-75pct"),
    pytest.param(0, {A + "target": "10"}, config(container_concurrency_target_fraction=0.75), 10.0, 7.5,
                 id="target10-75pct"),
    pytest.param(10, {A + "target": "1"}, KN, 1.0, 1.0, id="cc-above-target"),
    pytest.param(0, {A + "target": "500"}, KN, 500.0, 500.0, id="target-above-default"),
    pytest.param(1, {A + "target": "10"}, KN, 1.0, 1.0, id="target-above-cc-ignored-for-safety"),
    pytest.param(1, {A + "metric": "rps"}, KN, 200.0, 140.0, id="rps-defaults"),
    pytest.param(0, {A + "metric": "rps", A + "target": "1"}, KN, 1.0, 0.7, id="rps-target1"),
    pytest.param(0, {A + "metric": "rps", A + "target-utilization-percentage": "75"}, KN, 200.0, 150.0,
                 id="rps-tu-75"),
    pytest.param(0, {A + "metric": "rps", A + "target": "300"}, KN, 300.0, 210.0, id="rps-target-above-default"),
]


@pytest.mark.parametrize(("cc", "annotations", "cfg", "total", "target"), WORKED_TARGETS + KNATIVE_TARGETS)
def test_target_and_total(cc, annotations, cfg, total, target):
    spec = resolve_spec(cfg, annotations, container_concurrency=cc)
    assert (spec.total_value, spec.target_value) == (total, target)


# Knative's decider_test.go config and expected spec for "defaults".
DC = config(container_concurrency_target_fraction=1.0, max_scale_up_rate=10.0, requests_per_second_target_default=100,
            activator_capacity=811, rps_target_utilization_fraction=1.0)
BASE = ScalingSpec(metric="concurrency", target_value=100.0, total_value=100.0, target_burst_capacity=211.0,
                   panic_threshold=2.0, max_scale_up_rate=10.0, max_scale_down_rate=2.0, stable_window=60.0,
                   scale_down_delay=0.0, reachable=True, activation_scale=0, activator_capacity=811.0,
                   initial_scale=1)

# (cc, annotations, config changes, reachable, spec changes)
DECIDER = [
    pytest.param(0, {}, {}, True, {}, id="defaults"),
    pytest.param(0, {}, {}, False, {"reachable": False}, id="unreachable"),
    pytest.param(0, {}, {"container_concurrency_target_fraction": 0.8}, True, {"target_value": 80.0}, id="tu-below-1"),
    pytest.param(0, {}, {"max_scale_up_rate": 19.84, "max_scale_down_rate": 19.88}, True,
                 {"max_scale_up_rate": 19.84, "max_scale_down_rate": 19.88}, id="scale-rates"),
    pytest.param(1, {}, {}, True, {"target_value": 1.0, "total_value": 1.0}, id="cc1"),
    pytest.param(0, {A + "target": "1"}, {}, True, {"target_value": 1.0, "total_value": 1.0}, id="target1"),
    pytest.param(100, {}, {"container_concurrency_target_fraction": 0.8}, True, {"target_value": 80.0},
                 id="cc100-tu-below-1"),
    pytest.param(120, {}, {"target_burst_capacity": 63, "container_concurrency_target_fraction": 0.8}, True,
                 {"target_value": 96.0, "total_value": 120.0, "target_burst_capacity": 63.0}, id="tbc-from-config"),
    pytest.param(0, {}, {"activator_capacity": 420}, True, {"activator_capacity": 420.0}, id="activator-capacity"),
    pytest.param(120, {A + "target-burst-capacity": "211"},
                 {"target_burst_capacity": 63, "container_concurrency_target_fraction": 0.8}, True,
                 {"target_value": 96.0, "total_value": 120.0, "target_burst_capacity": 211.0}, id="tbc-annotation"),
    pytest.param(0, {A + "targetBurstCapacity": "-1"}, {}, True, {"target_burst_capacity": -1.0},
                 id="tbc-annotation-camel-case"),
    pytest.param(10, {A + "target": "1"}, {}, True, {"target_value": 1.0, "total_value": 1.0}, id="cc10-target1"),
    pytest.param(1, {A + "target": "10"}, {}, True, {"target_value": 1.0, "total_value": 1.0}, id="cc1-target10"),
    pytest.param(0, {A + "target": "10", A + "panic-threshold-percentage": "400"}, {}, True,
                 {"target_value": 10.0, "total_value": 10.0, "panic_threshold": 4.0}, id="panic-threshold-annotation"),
    pytest.param(0, {}, {"panic_threshold_percentage": 150.0}, True, {"panic_threshold": 1.5},
                 id="panic-threshold-config"),
    pytest.param(0, {A + "metric": "rps"}, {}, True, {"metric": "rps"}, id="rps-metric"),
    pytest.param(0, {}, {"scale_down_delay": 300.0}, True, {"scale_down_delay": 300.0}, id="sdd-config"),
    pytest.param(0, {A + "scale-down-delay": "10m"}, {"scale_down_delay": 300.0}, True, {"scale_down_delay": 600.0},
                 id="sdd-annotation"),
    pytest.param(0, {A + "scale-down-delay": "0s"}, {"scale_down_delay": 300.0}, True, {"scale_down_delay": 0.0},
                 id="sdd-annotation-zero-is-set-not-absent"),
    pytest.param(0, {A + "initial-scale": "2"}, {}, True, {"initial_scale": 2}, id="initial-scale"),
    pytest.param(0, {A + "activation-scale": "3"}, {}, True, {"activation_scale": 3}, id="activation-scale"),
    pytest.param(0, {A + "activation-scale": "1"}, {}, True, {"activation_scale": 1},
                 id="activation-scale-passed-through-as-is"),
    pytest.param(0, {A + "activation-scale": "x"}, {}, True, {"activation_scale": 0},
                 id="activation-scale-unparsable-is-absent"),
    pytest.param(0, {A + "window": "90s"}, {}, True, {"stable_window": 90.0}, id="window-annotation"),
    pytest.param(0, {}, {"stable_window": 120.0}, True, {"stable_window": 120.0}, id="window-config"),
    # Knative hands these to the decider unchanged; the decider and scaler skip them.
    pytest.param(0, {A + "initial-scale": "3"}, {"scale_down_delay": 30.0}, False,
                 {"reachable": False, "initial_scale": 3, "scale_down_delay": 30.0},
                 id="unreachable-passes-sdd-and-initial-scale-through"),
]


@pytest.mark.parametrize(("cc", "annotations", "changes", "reachable", "want"), DECIDER)
def test_resolve_spec_like_make_decider(cc, annotations, changes, reachable, want):
    cfg = dataclasses.replace(DC, **changes)
    got = resolve_spec(cfg, annotations, container_concurrency=cc, reachable=reachable)
    assert got == dataclasses.replace(BASE, **want)


def test_default_spec_matches_scaling_spec_defaults():
    assert resolve_spec(DEFAULT) == ScalingSpec()


# Every annotation resolve_spec reads, with a value that does not parse.
UNPARSABLE = [
    pytest.param(key, id=key.removeprefix(A))
    for key in [A + "target", A + "target-utilization-percentage", A + "panic-threshold-percentage",
                A + "target-burst-capacity", A + "scale-down-delay", A + "activation-scale", A + "window",
                A + "panic-window-percentage", A + "initial-scale", *LEGACY_ANNOTATIONS.values()]
]


@pytest.mark.parametrize("key", UNPARSABLE)
def test_unparsable_annotation_counts_as_absent(key):
    cfg = config(scale_down_delay=5.0, initial_scale=2, min_scale=1, max_scale=9)
    for junk in ("garbage", "", "1,5", " 3"):
        anns = {key: junk}
        assert resolve_spec(cfg, anns, container_concurrency=10) == resolve_spec(cfg, {}, container_concurrency=10)
        assert resolve_windows(cfg, anns) == resolve_windows(cfg)
        assert resolve_scale_bounds(cfg, anns) == (1, 9)


@pytest.mark.parametrize("key", UNPARSABLE)
def test_non_string_annotation_counts_as_absent(key):
    cfg = config(scale_down_delay=5.0, initial_scale=2, min_scale=1, max_scale=9)
    for junk in (1, 2.5, True, None):
        assert resolve_spec(cfg, {key: junk}) == resolve_spec(cfg, {})


# (config changes, annotations, stable s, panic s)
WINDOWS = [
    pytest.param({}, {}, 60.0, 6.0, id="defaults"),
    pytest.param({}, {A + "window": "10s", A + "panic-window-percentage": "10"}, 10.0, 1.0,
                 id="short-panic-floored-at-bucket"),
    pytest.param({}, {A + "window": "10m"}, 600.0, 60.0, id="long-window-default-10pct"),
    pytest.param({}, {A + "panic-window-percentage": "50"}, 60.0, 30.0, id="panic-pct-50"),
    pytest.param({}, {A + "panic-window-percentage": "51"}, 60.0, 31.0, id="panic-pct-51-rounds"),
    pytest.param({}, {A + "panicWindowPercentage": "50"}, 60.0, 30.0, id="panic-pct-camel-case"),
    pytest.param({}, {A + "window": "7s"}, 7.0, 1.0, id="0.7s-rounds-then-floors-to-1s"),
    pytest.param({}, {A + "window": "14s"}, 14.0, 1.0, id="1.4s-rounds-down"),
    pytest.param({}, {A + "window": "15s"}, 15.0, 2.0, id="1.5s-half-rounds-up"),
    pytest.param({}, {A + "window": "25s"}, 25.0, 3.0, id="2.5s-half-rounds-up-not-to-even"),
    pytest.param({"stable_window": 120.0, "panic_window_percentage": 5.0}, {}, 120.0, 6.0, id="from-configmap"),
    pytest.param({"stable_window": 120.0}, {A + "window": "30s"}, 30.0, 3.0, id="annotation-beats-configmap"),
]


@pytest.mark.parametrize(("changes", "annotations", "stable", "panic"), WINDOWS)
def test_resolve_windows(changes, annotations, stable, panic):
    assert resolve_windows(config(**changes), annotations) == (stable, panic)


# (config changes, annotations, reachable, (min, max))
BOUNDS = [
    pytest.param({}, None, True, (0, 0), id="defaults-unbounded"),
    pytest.param({"min_scale": 2, "max_scale": 5}, {}, True, (2, 5), id="from-configmap"),
    pytest.param({"min_scale": 2, "max_scale": 5}, {A + "min-scale": "3", A + "max-scale": "7"}, True, (3, 7),
                 id="annotations-beat-configmap"),
    pytest.param({"min_scale": 2}, {A + "min-scale": "0"}, True, (0, 0), id="annotation-zero-is-set"),
    pytest.param({}, {A + "minScale": "3", A + "maxScale": "4"}, True, (3, 4), id="camel-case"),
    pytest.param({}, {A + "min-scale": "2", A + "minScale": "3"}, True, (2, 0), id="kebab-wins"),
    pytest.param({"min_scale": 2, "max_scale": 5}, {}, False, (0, 5), id="unreachable-ignores-configmap-min"),
    pytest.param({}, {A + "min-scale": "3", A + "max-scale": "7"}, False, (0, 7), id="unreachable-ignores-min"),
]


@pytest.mark.parametrize(("changes", "annotations", "reachable", "want"), BOUNDS)
def test_resolve_scale_bounds(changes, annotations, reachable, want):
    assert resolve_scale_bounds(config(**changes), annotations, reachable=reachable) == want


# (config changes, annotations, initial scale): Knative's TestGetInitialScale and more
INITIAL = [
    pytest.param({}, {}, 1, id="not-set"),
    pytest.param({}, {A + "initial-scale": "2"}, 2, id="annotation-beats-configmap"),
    pytest.param({"allow_zero_initial_scale": True}, {A + "initial-scale": "0"}, 0, id="zero-allowed"),
    pytest.param({}, {A + "initial-scale": "0"}, 1, id="zero-not-allowed-falls-back"),
    pytest.param({"initial_scale": 3}, {A + "initial-scale": "0"}, 3, id="zero-not-allowed-uses-configmap"),
    pytest.param({}, {A + "initialScale": "4"}, 4, id="camel-case"),
]


@pytest.mark.parametrize(("changes", "annotations", "want"), INITIAL)
def test_resolve_initial_scale(changes, annotations, want):
    cfg = config(**changes)
    assert resolve_initial_scale(cfg, annotations) == want
    assert resolve_spec(cfg, annotations).initial_scale == want


ALGORITHMS = [
    pytest.param(None, "linear", id="absent"),
    pytest.param({A + "metric-aggregation-algorithm": "linear"}, "linear", id="linear"),
    pytest.param({A + "metric-aggregation-algorithm": "weighted-exponential"}, "weighted-exponential", id="kebab"),
    pytest.param({A + "metric-aggregation-algorithm": "weightedExponential"}, "weighted-exponential",
                 id="camel-value-normalised"),
    pytest.param({A + "metricAggregationAlgorithm": "weighted-exponential"}, "weighted-exponential",
                 id="camel-key"),
    pytest.param({A + "metric-aggregation-algorithm": "median"}, "linear", id="unknown-is-linear"),
    pytest.param({A + "metric-aggregation-algorithm": "linear", A + "metricAggregationAlgorithm": "weightedExponential"},
                 "linear", id="kebab-wins"),
]


@pytest.mark.parametrize(("annotations", "want"), ALGORITHMS)
def test_resolve_aggregation_algorithm(annotations, want):
    assert resolve_aggregation_algorithm(annotations) == want


RETENTION = [
    pytest.param({}, {}, True, 0.0, id="default-zero"),
    pytest.param({"scale_to_zero_pod_retention_period": 90.0}, {}, True, 90.0, id="configmap"),
    pytest.param({"scale_to_zero_pod_retention_period": 90.0}, {A + "scale-to-zero-pod-retention-period": "30s"},
                 True, 30.0, id="annotation"),
    pytest.param({}, {A + "scaleToZeroPodRetentionPeriod": "1m"}, True, 60.0, id="camel-case"),
    pytest.param({"scale_to_zero_pod_retention_period": 90.0}, {A + "scale-to-zero-pod-retention-period": "30s"},
                 False, 0.0, id="unreachable-zero"),
]


@pytest.mark.parametrize(("changes", "annotations", "reachable", "want"), RETENTION)
def test_resolve_pod_retention(changes, annotations, reachable, want):
    assert resolve_scale_to_zero_pod_retention(config(**changes), annotations, reachable=reachable) == want


METRICS = [
    pytest.param({}, {}, "concurrency", id="kpa-default"),
    pytest.param({"pod_autoscaler_class": HPA_CLASS}, {}, "cpu", id="hpa-from-configmap"),
    pytest.param({}, {A + "class": HPA_CLASS}, "cpu", id="hpa-from-annotation"),
    pytest.param({"pod_autoscaler_class": HPA_CLASS}, {A + "metric": "memory"}, "memory", id="annotation"),
    pytest.param({}, {A + "class": "custom.example.com"}, "concurrency", id="custom-class"),
]


@pytest.mark.parametrize(("changes", "annotations", "want"), METRICS)
def test_resolve_metric(changes, annotations, want):
    assert resolve_metric(config(**changes), annotations) == want
