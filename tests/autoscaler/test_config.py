"""config-autoscaler parsing and validation (cases from Knative's config_test.go and ours)."""

from __future__ import annotations

import dataclasses
import doctest
import logging
from pathlib import Path

import pytest
import yaml

import autoscaler.config
from autoscaler.config import AutoscalerConfig, ConfigError, parse_autoscaler_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config-autoscaler.yaml"
DEFAULT = AutoscalerConfig()

# Every key of reference 1.1, each with its default written as a user would.
DEFAULTS_AS_TEXT = {
    "container-concurrency-target-percentage": "70",
    "container-concurrency-target-default": "100",
    "requests-per-second-target-default": "200",
    "target-burst-capacity": "211",
    "stable-window": "60s",
    "panic-window-percentage": "10",
    "panic-threshold-percentage": "200",
    "max-scale-up-rate": "1000",
    "max-scale-down-rate": "2",
    "enable-scale-to-zero": "true",
    "scale-to-zero-grace-period": "30s",
    "scale-to-zero-pod-retention-period": "0s",
    "scale-down-delay": "0s",
    "pod-autoscaler-class": "kpa.autoscaling.knative.dev",
    "activator-capacity": "100",
    "initial-scale": "1",
    "allow-zero-initial-scale": "false",
    "min-scale": "0",
    "max-scale": "0",
    "max-scale-limit": "0",
}


def config(**changes) -> AutoscalerConfig:
    return dataclasses.replace(DEFAULT, **changes)


VALID = [
    pytest.param({}, DEFAULT, id="empty-is-default"),
    pytest.param(DEFAULTS_AS_TEXT, DEFAULT, id="every-key-at-its-default"),
    pytest.param(
        {
            "enable-scale-to-zero": "true", "max-scale-down-rate": "3.0", "max-scale-up-rate": "1.01",
            "container-concurrency-target-percentage": "0.71",
            "container-concurrency-target-default": "10.5",
            "requests-per-second-target-default": "10.11", "target-burst-capacity": "12345",
            "scale-down-delay": "15m", "stable-window": "5m", "tick-interval": "2s",
            "panic-window-percentage": "10", "panic-threshold-percentage": "200",
            "pod-autoscaler-class": "some.class", "activator-capacity": "905",
            "scale-to-zero-pod-retention-period": "2m3s",
        },
        config(target_burst_capacity=12345, container_concurrency_target_default=10.5,
               container_concurrency_target_fraction=0.71, requests_per_second_target_default=10.11,
               max_scale_down_rate=3, max_scale_up_rate=1.01, scale_down_delay=900.0, stable_window=300.0,
               activator_capacity=905, pod_autoscaler_class="some.class",
               scale_to_zero_pod_retention_period=123.0),
        id="knative-overridden",
    ),
    pytest.param(
        {"max-scale-up-rate": "1.001", "container-concurrency-target-percentage": "0.5",
         "container-concurrency-target-default": "10.0", "target-burst-capacity": "0",
         "stable-window": "5m", "activator-capacity": "1"},
        config(container_concurrency_target_fraction=0.5, container_concurrency_target_default=10,
               max_scale_up_rate=1.001, target_burst_capacity=0, stable_window=300.0, activator_capacity=1),
        id="knative-minimum",
    ),
    pytest.param({"container-concurrency-target-percentage": "55"},
                 config(container_concurrency_target_fraction=0.55), id="percentage-above-1-divided-by-100"),
    pytest.param({"container-concurrency-target-percentage": "1"},
                 config(container_concurrency_target_fraction=1.0), id="percentage-1-means-100-percent"),
    pytest.param({"container-concurrency-target-percentage": "1.5"},
                 config(container_concurrency_target_fraction=0.015), id="percentage-1.5-means-1.5-percent"),
    pytest.param({"container-concurrency-target-percentage": "100"},
                 config(container_concurrency_target_fraction=1.0), id="percentage-100-upper-edge"),
    pytest.param({"container-concurrency-target-percentage": "1", "container-concurrency-target-default": "0.01"},
                 config(container_concurrency_target_default=0.01, container_concurrency_target_fraction=1.0),
                 id="fraction-times-default-exactly-0.01"),
    pytest.param({"target-burst-capacity": "-1"}, config(target_burst_capacity=-1), id="tbc-minus-1-unlimited"),
    pytest.param({"enable-scale-to-zero": "TRUE"}, DEFAULT, id="bool-upper-case"),
    pytest.param({"enable-scale-to-zero": "0"}, config(enable_scale_to_zero=False), id="bool-zero"),
    pytest.param({"enable-scale-to-zero": "F"}, config(enable_scale_to_zero=False), id="bool-F"),
    pytest.param({"enable-scale-to-zero": "false", "min-scale": "1", "max-scale": "2"},
                 config(enable_scale_to_zero=False, min_scale=1, max_scale=2), id="toggles-flipped"),
    pytest.param({"scale-to-zero-grace-period": "33s"}, config(scale_to_zero_grace_period=33.0),
                 id="grace-period"),
    pytest.param({"scale-to-zero-grace-period": "1ns"}, config(scale_to_zero_grace_period=1e-9),
                 id="grace-period-just-positive"),
    pytest.param({"scale-down-delay": "2h"}, config(scale_down_delay=7200.0), id="scale-down-delay-no-upper-bound"),
    pytest.param({"requests-per-second-target-default": "0.01"},
                 config(requests_per_second_target_default=0.01), id="rps-default-lower-edge"),
    pytest.param({"max-scale-down-rate": "1.0001"}, config(max_scale_down_rate=1.0001), id="down-rate-just-above-1"),
    pytest.param({"stable-window": "6s"}, config(stable_window=6.0), id="stable-window-lower-edge"),
    pytest.param({"stable-window": "1h"}, config(stable_window=3600.0), id="stable-window-upper-edge"),
    pytest.param({"stable-window": "1m30s"}, config(stable_window=90.0), id="stable-window-compound"),
    pytest.param({"stable-window": "6000ms"}, config(stable_window=6.0), id="stable-window-ms-whole-seconds"),
    pytest.param({"panic-window-percentage": "1"}, config(panic_window_percentage=1.0), id="panic-pct-lower-edge"),
    pytest.param({"panic-window-percentage": "100"}, config(panic_window_percentage=100.0),
                 id="panic-pct-upper-edge"),
    pytest.param({"panic-threshold-percentage": "5"}, config(panic_threshold_percentage=5.0),
                 id="panic-threshold-not-validated-in-configmap"),
    pytest.param({"allow-zero-initial-scale": "true", "initial-scale": "0"},
                 config(allow_zero_initial_scale=True, initial_scale=0), id="initial-scale-0-allowed"),
    pytest.param({"max-scale": "10"}, config(max_scale=10), id="max-scale"),
    pytest.param({"min-scale": "4"}, config(min_scale=4), id="min-scale-without-max"),
    pytest.param({"min-scale": "3", "max-scale": "3"}, config(min_scale=3, max_scale=3), id="min-equals-max"),
    pytest.param({"max-scale": "10", "max-scale-limit": "11"}, config(max_scale=10, max_scale_limit=11),
                 id="max-scale-under-limit"),
    pytest.param({"max-scale": "11", "max-scale-limit": "11"}, config(max_scale=11, max_scale_limit=11),
                 id="max-scale-at-limit"),
    pytest.param({"max-scale": "2147483647"}, config(max_scale=2147483647), id="int32-max"),
]


@pytest.mark.parametrize(("data", "want"), VALID)
def test_valid_configmap_parses(data, want):
    assert AutoscalerConfig.from_configmap(data) == want


# (data, keys of the error in order, the first line of the message)
INVALID = [
    pytest.param({"max-scale-up-rate": "not a float"}, ["max-scale-up-rate"],
                 "max-scale-up-rate: 'not a float' is not a finite number", id="malformed-float"),
    pytest.param({"max-scale-up-rate": "NaN"}, ["max-scale-up-rate"],
                 "max-scale-up-rate: 'NaN' is not a finite number", id="nan-float"),
    pytest.param({"target-burst-capacity": "1,5"}, ["target-burst-capacity"],
                 "target-burst-capacity: '1,5' is not a finite number", id="comma-float"),
    pytest.param({"stable-window": "not a duration"}, ["stable-window"],
                 "stable-window: 'not a duration' is not a duration (like 60s, 1m30s, 500ms)",
                 id="malformed-duration"),
    pytest.param({"stable-window": "60"}, ["stable-window"],
                 "stable-window: '60' is not a duration (like 60s, 1m30s, 500ms)", id="duration-without-unit"),
    pytest.param({"enable-scale-to-zero": "yes"}, ["enable-scale-to-zero"],
                 "enable-scale-to-zero: 'yes' is not a boolean (true/false, t/f, 1/0)", id="bool-yes"),
    pytest.param({"allow-zero-initial-scale": "invalid"}, ["allow-zero-initial-scale"],
                 "allow-zero-initial-scale: 'invalid' is not a boolean (true/false, t/f, 1/0)",
                 id="allow-zero-unparsable"),
    pytest.param({"initial-scale": "invalid"}, ["initial-scale"],
                 "initial-scale: 'invalid' is not a 32-bit integer", id="initial-scale-unparsable"),
    pytest.param({"min-scale": "1.5"}, ["min-scale"], "min-scale: '1.5' is not a 32-bit integer",
                 id="int-with-fraction"),
    pytest.param({"max-scale": "2147483648"}, ["max-scale"], "max-scale: '2147483648' is not a 32-bit integer",
                 id="int32-overflow"),
    pytest.param({"scale-to-zero-grace-period": "0s"}, ["scale-to-zero-grace-period"],
                 "scale-to-zero-grace-period: '0s' must be > 0s", id="grace-zero"),
    pytest.param({"scale-to-zero-grace-period": "-1s"}, ["scale-to-zero-grace-period"],
                 "scale-to-zero-grace-period: '-1s' must be > 0s", id="grace-negative"),
    pytest.param({"scale-down-delay": "-1m23s"}, ["scale-down-delay"],
                 "scale-down-delay: '-1m23s' must be >= 0s", id="scale-down-delay-negative"),
    pytest.param({"scale-down-delay": "61984ms"}, ["scale-down-delay"],
                 "scale-down-delay: '61984ms' must be whole seconds", id="scale-down-delay-not-seconds"),
    pytest.param({"scale-to-zero-pod-retention-period": "-4m11s"}, ["scale-to-zero-pod-retention-period"],
                 "scale-to-zero-pod-retention-period: '-4m11s' must be >= 0s", id="retention-negative"),
    pytest.param({"scale-to-zero-pod-retention-period": "-1ns"}, ["scale-to-zero-pod-retention-period"],
                 "scale-to-zero-pod-retention-period: '-1ns' must be >= 0s", id="retention-just-negative"),
    pytest.param({"target-burst-capacity": "-11"}, ["target-burst-capacity"],
                 "target-burst-capacity: '-11' must be >= 0, or -1 for unlimited", id="tbc-negative"),
    pytest.param({"target-burst-capacity": "-0.5"}, ["target-burst-capacity"],
                 "target-burst-capacity: '-0.5' must be >= 0, or -1 for unlimited", id="tbc-just-negative"),
    pytest.param({"container-concurrency-target-percentage": "-42"}, ["container-concurrency-target-percentage"],
                 "container-concurrency-target-percentage: '-42' must be in (0, 100] as a percentage or "
                 "(0, 1] as a fraction", id="percentage-negative"),
    pytest.param({"container-concurrency-target-percentage": "0"}, ["container-concurrency-target-percentage"],
                 "container-concurrency-target-percentage: '0' must be in (0, 100] as a percentage or "
                 "(0, 1] as a fraction", id="percentage-zero"),
    pytest.param({"container-concurrency-target-percentage": "142.4"},
                 ["container-concurrency-target-percentage"],
                 "container-concurrency-target-percentage: '142.4' must be in (0, 100] as a percentage or "
                 "(0, 1] as a fraction", id="percentage-too-big"),
    pytest.param({"container-concurrency-target-percentage": "100.01"},
                 ["container-concurrency-target-percentage"],
                 "container-concurrency-target-percentage: '100.01' must be in (0, 100] as a percentage or "
                 "(0, 1] as a fraction", id="percentage-just-above-100"),
    pytest.param({"container-concurrency-target-percentage": "1", "container-concurrency-target-default": "0.001"},
                 ["container-concurrency-target-default", "container-concurrency-target-percentage"],
                 "container-concurrency-target-default: '0.001' times container-concurrency-target-percentage "
                 "(1 as a fraction) gives a per-pod target of 0.001, must be >= 0.01", id="tu-times-cc-below-0.01"),
    pytest.param({"requests-per-second-target-default": "-5.25"}, ["requests-per-second-target-default"],
                 "requests-per-second-target-default: '-5.25' must be >= 0.01", id="rps-negative"),
    pytest.param({"requests-per-second-target-default": "0.0099"}, ["requests-per-second-target-default"],
                 "requests-per-second-target-default: '0.0099' must be >= 0.01", id="rps-just-below"),
    pytest.param({"activator-capacity": "0.95"}, ["activator-capacity"],
                 "activator-capacity: '0.95' must be >= 1", id="activator-capacity-below-1"),
    pytest.param({"max-scale-up-rate": "1"}, ["max-scale-up-rate"], "max-scale-up-rate: '1' must be > 1.0",
                 id="up-rate-1"),
    pytest.param({"max-scale-down-rate": "-55"}, ["max-scale-down-rate"],
                 "max-scale-down-rate: '-55' must be > 1.0", id="down-rate-negative"),
    pytest.param({"max-scale-down-rate": "1"}, ["max-scale-down-rate"], "max-scale-down-rate: '1' must be > 1.0",
                 id="down-rate-1"),
    pytest.param({"stable-window": "1h1s"}, ["stable-window"],
                 "stable-window: '1h1s' must be between 6s and 1h0m0s", id="stable-window-too-big"),
    pytest.param({"stable-window": "1s"}, ["stable-window"],
                 "stable-window: '1s' must be between 6s and 1h0m0s", id="stable-window-too-small"),
    pytest.param({"stable-window": "5999ms"}, ["stable-window"],
                 "stable-window: '5999ms' must be between 6s and 1h0m0s", id="stable-window-just-below"),
    pytest.param({"stable-window": "61984ms"}, ["stable-window"],
                 "stable-window: '61984ms' must be whole seconds", id="stable-window-not-seconds"),
    pytest.param({"panic-window-percentage": "0.1"}, ["panic-window-percentage"],
                 "panic-window-percentage: '0.1' must be between 1 and 100", id="panic-pct-too-small"),
    pytest.param({"stable-window": "12s", "panic-window": "3s", "panic-window-percentage": "110"},
                 ["panic-window-percentage"], "panic-window-percentage: '110' must be between 1 and 100",
                 id="panic-pct-too-big"),
    pytest.param({"panic-threshold-percentage": "fifty"}, ["panic-threshold-percentage"],
                 "panic-threshold-percentage: 'fifty' is not a finite number", id="panic-threshold-must-parse"),
    pytest.param({"allow-zero-initial-scale": "false", "initial-scale": "0"},
                 ["initial-scale", "allow-zero-initial-scale"],
                 "initial-scale: '0' must be >= 1 unless allow-zero-initial-scale is true",
                 id="initial-scale-0-prohibited"),
    pytest.param({"initial-scale": "-1"}, ["initial-scale"], "initial-scale: '-1' must be >= 0",
                 id="initial-scale-negative"),
    pytest.param({"min-scale": "-1"}, ["min-scale"], "min-scale: '-1' must be >= 0", id="min-scale-negative"),
    pytest.param({"max-scale": "-1"}, ["max-scale"], "max-scale: '-1' must be >= 0 (0 means no limit)",
                 id="max-scale-negative"),
    pytest.param({"max-scale": "10", "max-scale-limit": "9"}, ["max-scale", "max-scale-limit"],
                 "max-scale: '10' must be in [1, 9] when max-scale-limit is 9", id="max-scale-over-limit"),
    pytest.param({"max-scale": "0", "max-scale-limit": "11"}, ["max-scale", "max-scale-limit"],
                 "max-scale: '0' must be in [1, 11] when max-scale-limit is 11", id="unlimited-max-with-limit"),
    pytest.param({"max-scale-limit": "11"}, ["max-scale", "max-scale-limit"],
                 "max-scale: 0 (default) must be in [1, 11] when max-scale-limit is 11",
                 id="default-max-with-limit"),
    pytest.param({"max-scale-limit": "-9"}, ["max-scale-limit"],
                 "max-scale-limit: '-9' must be >= 0 (0 means no limit)", id="limit-negative"),
    pytest.param({"min-scale": "4", "max-scale": "3"}, ["min-scale", "max-scale"],
                 "min-scale: '4' must be <= max-scale (3) when max-scale > 0", id="min-above-max"),
    pytest.param({"min-scale": 1}, ["min-scale"], "min-scale: 1 must be a string (quote it)",
                 id="value-not-a-string"),
]


@pytest.mark.parametrize(("data", "keys", "first_line"), INVALID)
def test_invalid_configmap_names_key_value_and_rule(data, keys, first_line):
    with pytest.raises(ConfigError) as info:
        AutoscalerConfig.from_configmap(data)
    assert isinstance(info.value, ValueError)
    assert info.value.keys == keys
    assert str(info.value).splitlines()[0] == first_line
    assert info.value.reason == str(info.value)


def test_all_problems_reported_at_once_in_knative_order():
    data = {
        "stable-window": "2s",               # rule 12
        "max-scale-up-rate": "1",            # rule 10
        "scale-to-zero-grace-period": "0s",  # rule 1
        "min-scale": "x",                    # unparsable: reported first, with the parse errors
        "max-scale": "3",
        "max-scale-limit": "2",              # rule 17: max over limit
        "enable-scale-to-zero": "maybe",     # unparsable
    }
    with pytest.raises(ConfigError) as info:
        AutoscalerConfig.from_configmap(data)
    assert str(info.value).splitlines() == [
        "enable-scale-to-zero: 'maybe' is not a boolean (true/false, t/f, 1/0)",
        "min-scale: 'x' is not a 32-bit integer",
        "scale-to-zero-grace-period: '0s' must be > 0s",
        "max-scale-up-rate: '1' must be > 1.0",
        "stable-window: '2s' must be between 6s and 1h0m0s",
        "max-scale: '3' must be in [1, 2] when max-scale-limit is 2",
    ]
    assert info.value.keys == [
        "enable-scale-to-zero", "min-scale", "scale-to-zero-grace-period", "max-scale-up-rate",
        "stable-window", "max-scale", "max-scale-limit",
    ]
    assert [p.keys[0] for p in info.value.problems] == info.value.keys[:6]


def test_one_problem_per_key_and_no_cross_rule_on_a_broken_key():
    # -1.5s breaks two scale-down-delay rules and 142 makes the product rule meaningless.
    data = {"scale-down-delay": "-1500ms", "container-concurrency-target-percentage": "142",
            "container-concurrency-target-default": "0.00001"}
    with pytest.raises(ConfigError) as info:
        AutoscalerConfig.from_configmap(data)
    assert info.value.keys == ["scale-down-delay", "container-concurrency-target-percentage"]


def test_example_configmap_parses_to_defaults():
    assert AutoscalerConfig.from_yaml(EXAMPLE.read_text()) == AutoscalerConfig()


def test_example_block_documents_every_key_at_its_default():
    manifest = yaml.safe_load(EXAMPLE.read_text())
    assert manifest["metadata"] == {**manifest["metadata"], "name": "config-autoscaler",
                                    "namespace": "knative-serving"}
    assert set(manifest["data"]) == {"_example"}
    example = yaml.safe_load(manifest["data"]["_example"])
    assert set(example) == set(DEFAULTS_AS_TEXT)
    assert AutoscalerConfig.from_configmap(example) == AutoscalerConfig()


MANIFESTS = [
    pytest.param("kind: ConfigMap\nmetadata: {name: config-autoscaler}\ndata: {min-scale: '2'}\n",
                 config(min_scale=2), id="manifest"),
    pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler}\n", DEFAULT,
                 id="manifest-without-data"),
    pytest.param("min-scale: '2'\nstable-window: 90s\n", config(min_scale=2, stable_window=90.0),
                 id="plain-data-mapping"),
    pytest.param("", DEFAULT, id="empty-document"),
]


@pytest.mark.parametrize(("text", "want"), MANIFESTS)
def test_yaml_sources(text, want):
    assert AutoscalerConfig.from_yaml(text) == want
    assert parse_autoscaler_config(text) == want
    assert AutoscalerConfig.from_configmap(yaml.safe_load(text) or {}) == want


BAD_MANIFESTS = [
    pytest.param("kind: Secret\nmetadata: {name: config-autoscaler}\n", ["kind"], "kind: 'Secret' must be ConfigMap",
                 id="wrong-kind"),
    pytest.param("kind: ConfigMap\nmetadata: {name: config-network}\n", ["metadata.name"],
                 "metadata.name: 'config-network' must be config-autoscaler", id="wrong-name"),
    pytest.param("apiVersion: apps/v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler}\n", ["apiVersion"],
                 "apiVersion: 'apps/v1' must be v1", id="wrong-api-version"),
    pytest.param("kind: ConfigMap\nmetadata: {name: config-autoscaler}\ndata: [1]\n", ["data"],
                 "data: [1] must be a mapping of strings", id="data-not-a-mapping"),
    pytest.param("kind: ConfigMap\nmetadata: {name: config-autoscaler}\ndata: {min-scale: 1}\n", ["min-scale"],
                 "min-scale: 1 must be a string (quote it)", id="unquoted-number"),
    pytest.param("- a\n- b\n", ["config-autoscaler"], "config-autoscaler: ['a', 'b'] must be a ConfigMap or a mapping",
                 id="a-list"),
]


@pytest.mark.parametrize(("text", "keys", "first_line"), BAD_MANIFESTS)
def test_bad_manifest_names_the_field(text, keys, first_line):
    with pytest.raises(ConfigError) as info:
        parse_autoscaler_config(text)
    assert info.value.keys == keys
    assert str(info.value).splitlines()[0] == first_line


def test_unparsable_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^config-autoscaler: <yaml> is not valid YAML") as info:
        parse_autoscaler_config("data: {min-scale: '1'\n")
    assert info.value.keys == ["config-autoscaler"]


def test_unknown_keys_and_example_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="autoscaler.config"):
        got = AutoscalerConfig.from_configmap({"_example": "# docs", "tick-interval": "2s", "min-scale": "1"})
    assert got == config(min_scale=1)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "tick-interval" in record.getMessage() and "_example" in record.getMessage()
    assert "min-scale" not in record.getMessage()


def test_known_keys_only_log_nothing(caplog):
    with caplog.at_level(logging.DEBUG, logger="autoscaler.config"):
        AutoscalerConfig.from_configmap(DEFAULTS_AS_TEXT)
    assert caplog.records == []


def test_direct_construction_does_not_validate():
    assert AutoscalerConfig(stable_window=1.0).stable_window == 1.0


def test_module_docstring_example_runs():
    result = doctest.testmod(autoscaler.config)
    assert result.attempted > 0 and result.failed == 0


def test_a_file_with_only_a_data_block_is_that_data():
    config = parse_autoscaler_config("data:\n  stable-window: 30s\n  max-scale: '5'\n")
    assert config.stable_window == 30.0 and config.max_scale == 5
