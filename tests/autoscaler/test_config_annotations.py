"""Autoscaling annotation validation (cases from Knative's annotation_validation_test.go)."""

from __future__ import annotations

import dataclasses
import doctest

import pytest

import autoscaler.annotations
from autoscaler.config import (
    ANNOTATION_KEYS,
    HPA_CLASS,
    KPA_CLASS,
    LEGACY_ANNOTATIONS,
    AutoscalerConfig,
    FieldError,
    validate_annotations,
)

A = "autoscaling.knative.dev/"
CLASS, METRIC, TARGET = A + "class", A + "metric", A + "target"
MIN, MAX, INITIAL, ACTIVATION = A + "min-scale", A + "max-scale", A + "initial-scale", A + "activation-scale"
WINDOW, PWP, PTP = A + "window", A + "panic-window-percentage", A + "panic-threshold-percentage"
TU, TBC, SDD = A + "target-utilization-percentage", A + "target-burst-capacity", A + "scale-down-delay"
RETENTION, ALGORITHM = A + "scale-to-zero-pod-retention-period", A + "metric-aggregation-algorithm"
INT32_MAX = 2147483647

# (annotations, config changes, every error as printed)
CASES = [
    pytest.param(None, {}, [], id="nil-annotations"),
    pytest.param({}, {}, [], id="empty-annotations"),
    pytest.param({"other.dev/x": "y", A + "unknown": "z"}, {}, [], id="unrelated-annotations-ignored"),
    pytest.param({MIN: 1, CLASS: True, "other.dev/x": 5}, {},
                 [f"invalid value: 1; annotation values must be strings: {MIN}",
                  f"invalid value: True; annotation values must be strings: {CLASS}"],
                 id="unquoted-yaml-values"),
    pytest.param({CLASS: "unsupported.knative.dev"}, {},
                 [f"invalid value: unsupported.knative.dev; a *.knative.dev class must be {KPA_CLASS} or "
                  f"{HPA_CLASS}: {CLASS}"], id="invalid-knative-class"),
    pytest.param({CLASS: "some.other.domain"}, {}, [], id="custom-class-allowed"),
    pytest.param({MIN: "0"}, {}, [], id="min-0"),
    pytest.param({MAX: "0"}, {}, [], id="max-0"),
    pytest.param({MIN: "-1"}, {}, [f"expected 0 <= -1 <= {INT32_MAX}: {MIN}"], id="min-negative"),
    pytest.param({MAX: "2147483648"}, {}, [f"expected 0 <= 2147483648 <= {INT32_MAX}: {MAX}"], id="max-int32-overflow"),
    pytest.param({MAX: "2147483647"}, {}, [], id="max-int32-max"),
    pytest.param({MAX: "-1"}, {}, [f"expected 0 <= -1 <= {INT32_MAX}: {MAX}"], id="max-negative"),
    pytest.param({MIN: "foo"}, {}, [f"invalid value: foo; expected an integer: {MIN}"], id="min-foo"),
    pytest.param({MAX: "bar"}, {}, [f"invalid value: bar; expected an integer: {MAX}"], id="max-bar"),
    pytest.param({MAX: "bar", MIN: "bar"}, {},
                 [f"invalid value: bar; expected an integer: {MIN}", f"invalid value: bar; expected an integer: {MAX}"],
                 id="min-and-max-bar"),
    pytest.param({MIN: "5"}, {}, [], id="min-5"),
    pytest.param({MIN: "2", MAX: "5"}, {}, [], id="min-2-max-5"),
    pytest.param({MIN: "5", MAX: "5"}, {}, [], id="min-equals-max"),
    pytest.param({MIN: "5", MAX: "2"}, {}, [f"max-scale=2 is less than min-scale=5: {MAX}, {MIN}"], id="min-above-max"),
    pytest.param({MAX: "11"}, {"max_scale_limit": 10}, [f"expected 1 <= 11 <= 10: {MAX}"], id="max-over-limit"),
    pytest.param({MAX: "10"}, {"max_scale_limit": 10}, [], id="max-at-limit"),
    pytest.param({MAX: "20"}, {"max_scale_limit": 10, "max_scale": 11}, [f"expected 1 <= 20 <= 10: {MAX}"],
                 id="max-over-limit-with-default-max"),
    pytest.param({MAX: "0"}, {"max_scale_limit": 10, "max_scale": 1},
                 [f"max-scale=0 (unlimited), must be less than 10: {MAX}"], id="unlimited-max-with-limit"),
    pytest.param({}, {"max_scale_limit": 10, "max_scale": 11}, [], id="no-max-annotation-with-limit"),
    pytest.param({MAX: "bar"}, {"max_scale_limit": 10}, [f"invalid value: bar; expected an integer: {MAX}"],
                 id="unparsable-max-with-limit-one-error"),
    pytest.param({MIN: "1", ACTIVATION: "2", MAX: "3"}, {}, [], id="min-activation-max-ordered"),
    pytest.param({MIN: "3", ACTIVATION: "2"}, {}, [f"min-scale=3 is greater than activation-scale=2: {ACTIVATION}"],
                 id="activation-below-min"),
    pytest.param({MAX: "1", ACTIVATION: "2"}, {}, [f"max-scale=1 is less than activation-scale=2: {ACTIVATION}"],
                 id="activation-above-max"),
    pytest.param({ACTIVATION: "1"}, {}, [f"activation-scale=1 must be greater than 1: {ACTIVATION}"],
                 id="activation-1"),
    pytest.param({ACTIVATION: "2"}, {}, [], id="activation-2"),
    pytest.param({ACTIVATION: "two"}, {}, [f"invalid value: two; expected an integer: {ACTIVATION}"],
                 id="activation-unparsable"),
    pytest.param({ALGORITHM: "linear", CLASS: KPA_CLASS}, {}, [], id="linear-on-kpa"),
    pytest.param({ALGORITHM: "weighted-exponential", CLASS: KPA_CLASS}, {}, [], id="weighted-exponential-on-kpa"),
    pytest.param({ALGORITHM: "weightedExponential", CLASS: KPA_CLASS}, {}, [], id="weightedExponential-on-kpa"),
    pytest.param({ALGORITHM: "", CLASS: KPA_CLASS}, {}, [], id="empty-algorithm"),
    pytest.param({ALGORITHM: "random-selection", CLASS: KPA_CLASS}, {},
                 [f"invalid value: random-selection; expected linear or weighted-exponential: {ALGORITHM}"],
                 id="random-algorithm-on-kpa"),
    pytest.param({ALGORITHM: "random-selection", CLASS: "of-keys"}, {}, [], id="random-algorithm-custom-class"),
    pytest.param({ALGORITHM: "random-selection"}, {}, [], id="algorithm-unchecked-without-class-annotation"),
    pytest.param({PWP: "-1"}, {}, [f"expected 1 <= -1 <= 100: {PWP}"], id="panic-window-pct-negative"),
    pytest.param({PWP: "202"}, {}, [f"expected 1 <= 202 <= 100: {PWP}"], id="panic-window-pct-too-big"),
    pytest.param({PWP: "0.99"}, {}, [f"expected 1 <= 0.99 <= 100: {PWP}"], id="panic-window-pct-just-below"),
    pytest.param({PWP: "1"}, {}, [], id="panic-window-pct-lower-edge"),
    pytest.param({PWP: "100"}, {}, [], id="panic-window-pct-upper-edge"),
    pytest.param({PWP: "fifty"}, {}, [f"invalid value: fifty; expected a number: {PWP}"], id="panic-window-pct-fifty"),
    pytest.param({PTP: "210"}, {}, [], id="panic-threshold-ok"),
    pytest.param({PTP: "110"}, {}, [], id="panic-threshold-lower-edge"),
    pytest.param({PTP: "1000"}, {}, [], id="panic-threshold-upper-edge"),
    pytest.param({PTP: "109"}, {}, [f"expected 110 <= 109 <= 1000: {PTP}"], id="panic-threshold-too-small"),
    pytest.param({PTP: "10009"}, {}, [f"expected 110 <= 10009 <= 1000: {PTP}"], id="panic-threshold-too-big"),
    pytest.param({PTP: "fifty"}, {}, [f"invalid value: fifty; expected a number: {PTP}"], id="panic-threshold-fifty"),
    pytest.param({TARGET: "-11"}, {}, [f"target -11 should be at least 0.01: {TARGET}"], id="target-negative"),
    pytest.param({TARGET: "0"}, {}, [f"target 0 should be at least 0.01: {TARGET}"], id="target-0"),
    pytest.param({TARGET: "0.0099"}, {}, [f"target 0.0099 should be at least 0.01: {TARGET}"], id="target-just-below"),
    pytest.param({TARGET: "0.01"}, {}, [], id="target-lower-edge"),
    pytest.param({TARGET: "100}"}, {}, [f"invalid value: 100}}; expected a number: {TARGET}"], id="target-invalid"),
    pytest.param({TARGET: "11"}, {}, [], id="target-ok"),
    pytest.param({TBC: "-11"}, {}, [f"invalid value: -11; expected a number >= 0, or -1 for unlimited: {TBC}"],
                 id="tbc-negative"),
    pytest.param({TBC: "0"}, {}, [], id="tbc-0"),
    pytest.param({TBC: "19870709"}, {}, [], id="tbc-large"),
    pytest.param({TBC: "-1"}, {}, [], id="tbc-minus-1"),
    pytest.param({TBC: "qarashen"}, {}, [f"invalid value: qarashen; expected a number >= 0, or -1 for unlimited: {TBC}"],
                 id="tbc-invalid"),
    pytest.param({TU: "0"}, {}, [f"expected 1 <= 0 <= 100: {TU}"], id="tu-too-small"),
    pytest.param({TU: "101"}, {}, [f"expected 1 <= 101 <= 100: {TU}"], id="tu-too-big"),
    pytest.param({TU: "1"}, {}, [], id="tu-lower-edge"),
    pytest.param({TU: "100"}, {}, [], id="tu-upper-edge"),
    pytest.param({TU: "dghyak"}, {}, [f"invalid value: dghyak; expected a number: {TU}"], id="tu-invalid"),
    pytest.param({WINDOW: "jerry-was-a-racecar-driver"}, {},
                 [f"invalid value: jerry-was-a-racecar-driver; expected a duration like 60s: {WINDOW}"],
                 id="window-invalid"),
    pytest.param({WINDOW: "1s"}, {}, [f"expected 6s <= 1s <= 1h0m0s: {WINDOW}"], id="window-too-short"),
    pytest.param({WINDOW: "5999ms"}, {}, [f"expected 6s <= 5999ms <= 1h0m0s: {WINDOW}"], id="window-just-short"),
    pytest.param({WINDOW: "6s"}, {}, [], id="window-lower-edge"),
    pytest.param({WINDOW: "1h"}, {}, [], id="window-upper-edge"),
    pytest.param({WINDOW: "365h"}, {}, [f"expected 6s <= 365h <= 1h0m0s: {WINDOW}"], id="window-too-long"),
    pytest.param({WINDOW: "1m9s82ms"}, {},
                 [f"must be specified with at most second precision; got 1m9s82ms: {WINDOW}"], id="window-too-precise"),
    pytest.param({WINDOW: "7s", CLASS: KPA_CLASS}, {}, [], id="window-on-kpa"),
    pytest.param({WINDOW: "7s", CLASS: "test"}, {}, [], id="window-on-custom-class"),
    pytest.param({RETENTION: "0"}, {}, [], id="retention-0"),
    pytest.param({RETENTION: "21m31s"}, {}, [], id="retention-positive"),
    pytest.param({RETENTION: "1.5s"}, {}, [], id="retention-fractional-seconds-allowed"),
    pytest.param({RETENTION: "311m"}, {}, [f"expected 0s <= 311m <= 1h0m0s: {RETENTION}"], id="retention-too-long"),
    pytest.param({RETENTION: "-42s"}, {}, [f"expected 0s <= -42s <= 1h0m0s: {RETENTION}"], id="retention-negative"),
    pytest.param({RETENTION: "twenty-two-minutes"}, {},
                 [f"invalid value: twenty-two-minutes; expected a duration like 60s: {RETENTION}"],
                 id="retention-invalid"),
    pytest.param({SDD: "0"}, {}, [], id="sdd-0"),
    pytest.param({SDD: "21m31s"}, {}, [], id="sdd-positive"),
    pytest.param({SDD: "1h"}, {}, [], id="sdd-upper-edge"),
    pytest.param({SDD: "1h0m1s"}, {}, [f"expected 0s <= 1h0m1s <= 1h0m0s: {SDD}"], id="sdd-just-too-long"),
    pytest.param({SDD: "311m"}, {}, [f"expected 0s <= 311m <= 1h0m0s: {SDD}"], id="sdd-too-long"),
    pytest.param({SDD: "42.5s"}, {}, [f"must be specified with at most second precision; got 42.5s: {SDD}"],
                 id="sdd-too-precise"),
    pytest.param({SDD: "-42s"}, {}, [f"expected 0s <= -42s <= 1h0m0s: {SDD}"], id="sdd-negative"),
    pytest.param({SDD: "twenty"}, {}, [f"invalid value: twenty; expected a duration like 60s: {SDD}"],
                 id="sdd-invalid"),
    pytest.param({PTP: "fifty", PWP: "-11", MIN: "-4", MAX: "never"}, {},
                 [f"expected 0 <= -4 <= {INT32_MAX}: {MIN}", f"invalid value: never; expected an integer: {MAX}",
                  f"expected 1 <= -11 <= 100: {PWP}", f"invalid value: fifty; expected a number: {PTP}"],
                 id="all-together-now-fail"),
    pytest.param({PTP: "125", PWP: "75", MIN: "5", MAX: "8", WINDOW: "1984s"}, {}, [],
                 id="all-together-now-succeed"),
    pytest.param({METRIC: "cpu"}, {}, [f"invalid value: cpu; the kpa class scales on concurrency or rps: {METRIC}"],
                 id="cpu-on-default-kpa"),
    pytest.param({METRIC: "", CLASS: HPA_CLASS}, {},
                 [f"invalid value: ; the hpa class needs a metric (cpu, memory, ...): {METRIC}"],
                 id="empty-metric-on-hpa"),
    pytest.param({METRIC: "rps"}, {}, [], id="rps-on-kpa"),
    pytest.param({METRIC: "concurrency"}, {}, [], id="concurrency-on-kpa"),
    pytest.param({CLASS: HPA_CLASS, METRIC: "cpu"}, {}, [], id="cpu-on-hpa"),
    pytest.param({CLASS: "other", METRIC: "rps"}, {}, [], id="any-metric-on-custom-class"),
    pytest.param({METRIC: "cpu"}, {"pod_autoscaler_class": HPA_CLASS}, [], id="cpu-on-configmap-hpa"),
    pytest.param({METRIC: "cpu", CLASS: KPA_CLASS}, {"pod_autoscaler_class": HPA_CLASS},
                 [f"invalid value: cpu; the kpa class scales on concurrency or rps: {METRIC}"],
                 id="class-annotation-beats-configmap-class"),
    pytest.param({INITIAL: "0"}, {},
                 [f"invalid value: 0; initial-scale=0 not allowed by cluster (allow-zero-initial-scale is false): "
                  f"{INITIAL}"], id="initial-0-not-allowed"),
    pytest.param({INITIAL: "0"}, {"allow_zero_initial_scale": True}, [], id="initial-0-allowed"),
    pytest.param({INITIAL: "2"}, {}, [], id="initial-2"),
    pytest.param({INITIAL: "-1"}, {}, [f"invalid value: -1; expected >= 0: {INITIAL}"], id="initial-negative"),
    pytest.param({INITIAL: "invalid"}, {}, [f"invalid value: invalid; expected an integer: {INITIAL}"],
                 id="initial-invalid"),
]


@pytest.mark.parametrize(("annotations", "changes", "want"), CASES)
def test_validate_annotations(annotations, changes, want):
    config = dataclasses.replace(AutoscalerConfig(), **changes)
    assert [str(e) for e in validate_annotations(annotations, config)] == want


# (kebab key, a value breaking its rule, a valid value) for every annotation with an alias
ALIASED = [
    pytest.param(MIN, "-1", "1", id="min-scale"),
    pytest.param(MAX, "-1", "1", id="max-scale"),
    pytest.param(INITIAL, "-1", "1", id="initial-scale"),
    pytest.param(TU, "101", "70", id="target-utilization-percentage"),
    pytest.param(PWP, "0", "10", id="panic-window-percentage"),
    pytest.param(PTP, "100", "200", id="panic-threshold-percentage"),
    pytest.param(TBC, "-2", "-1", id="target-burst-capacity"),
    pytest.param(SDD, "2h", "1s", id="scale-down-delay"),
    pytest.param(RETENTION, "2h", "1s", id="scale-to-zero-pod-retention-period"),
    pytest.param(ALGORITHM, "median", "linear", id="metric-aggregation-algorithm"),
]


def test_every_alias_is_tested():
    assert {p.values[0] for p in ALIASED} == set(LEGACY_ANNOTATIONS)


@pytest.mark.parametrize(("key", "bad", "good"), ALIASED)
def test_both_spellings_are_checked_and_named(key, bad, good):
    camel = LEGACY_ANNOTATIONS[key]
    assert camel.startswith(A) and "-" not in camel.removeprefix(A)
    for spelling in (key, camel):
        [error] = validate_annotations({spelling: bad, CLASS: KPA_CLASS}, AutoscalerConfig())
        assert error.keys == [spelling]
        assert bad in error.message
        assert validate_annotations({spelling: good, CLASS: KPA_CLASS}, AutoscalerConfig()) == []


@pytest.mark.parametrize(("key", "bad", "good"), ALIASED)
def test_kebab_spelling_wins_over_camel_case(key, bad, good):
    camel = LEGACY_ANNOTATIONS[key]
    [error] = validate_annotations({key: bad, camel: good, CLASS: KPA_CLASS}, AutoscalerConfig())
    assert error.keys == [key]
    assert validate_annotations({key: good, camel: bad, CLASS: KPA_CLASS}, AutoscalerConfig()) == []


def test_field_error_prints_like_knative():
    error = FieldError("max-scale=2 is less than min-scale=5", [MAX, MIN])
    assert str(error) == f"max-scale=2 is less than min-scale=5: {MAX}, {MIN}"
    assert error.message == "max-scale=2 is less than min-scale=5" and error.keys == [MAX, MIN]


def test_module_docstring_example_runs():
    result = doctest.testmod(autoscaler.annotations)
    assert result.attempted > 0 and result.failed == 0


def test_config_module_reexports_the_annotation_api():
    assert validate_annotations is autoscaler.annotations.validate_annotations
    assert FieldError is autoscaler.annotations.FieldError


@pytest.mark.parametrize("key", [pytest.param(k, id=k.removeprefix(A)) for k in ANNOTATION_KEYS])
def test_every_listed_annotation_key_is_one_validation_reads(key):
    # With the class pinned to KPA every key but the class itself refuses "bogus".
    anns = {CLASS: "bogus.knative.dev"} if key == CLASS else {CLASS: KPA_CLASS, key: "bogus"}
    assert [e.keys[0] for e in validate_annotations(anns, AutoscalerConfig())] == [key]


def test_annotation_keys_are_the_kebab_keys_and_their_legacy_spellings():
    assert len(set(ANNOTATION_KEYS)) == len(ANNOTATION_KEYS) == 15 + len(LEGACY_ANNOTATIONS)
    assert set(LEGACY_ANNOTATIONS) | set(LEGACY_ANNOTATIONS.values()) <= set(ANNOTATION_KEYS)
    assert all(k.startswith(A) for k in ANNOTATION_KEYS)
