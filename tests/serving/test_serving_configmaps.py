"""serving.configmaps: config-defaults, config-domain and config-autoscaler parsing."""

from __future__ import annotations

import pytest

from serving.configmaps import (
    DefaultsConfig, DomainConfig, DomainEntry, default_revision_spec, parse_autoscaler_configmap,
    parse_defaults_config, parse_domain_config,
)
from serving.model import Container, RevisionSpec
from serving.validation import ValidationError

DEFAULTS_CASES = [
    pytest.param({}, DefaultsConfig(), id="empty-is-knative-defaults"),
    pytest.param({"_example": "docs", "revision-timeout-seconds": "100"},
                 DefaultsConfig(revision_timeout_seconds=100,
                                revision_response_start_timeout_seconds=100),
                 id="response-start-follows-timeout"),
    pytest.param({"revision-timeout-seconds": "100",
                  "revision-response-start-timeout-seconds": "30",
                  "revision-idle-timeout-seconds": "20", "container-concurrency": "10",
                  "container-concurrency-max-limit": "50",
                  "allow-container-concurrency-zero": "false",
                  "max-revision-timeout-seconds": "900"},
                 DefaultsConfig(100, 900, 30, 20, 10, 50, False), id="every-key"),
]


@pytest.mark.parametrize(("data", "want"), DEFAULTS_CASES)
def test_config_defaults_parse(data, want):
    assert parse_defaults_config(data) == want


DEFAULTS_ERRORS = [
    pytest.param({"revision-timeout-seconds": "5m"}, "data.revision-timeout-seconds",
                 "not a 64-bit integer", id="duration-not-integer"),
    pytest.param({"allow-container-concurrency-zero": "yes"},
                 "data.allow-container-concurrency-zero", "not a boolean", id="bad-bool"),
    pytest.param({"revision-timeout-seconds": "700"}, "data.revision-timeout-seconds",
                 "must be <= max-revision-timeout-seconds (600)", id="timeout-above-max"),
    pytest.param({"revision-response-start-timeout-seconds": "301"},
                 "data.revision-response-start-timeout-seconds",
                 "must be <= revision-timeout-seconds (300)", id="response-start-above-timeout"),
    pytest.param({"revision-idle-timeout-seconds": "301"}, "data.revision-idle-timeout-seconds",
                 "must be <= revision-timeout-seconds", id="idle-above-timeout"),
    pytest.param({"container-concurrency-max-limit": "0"},
                 "data.container-concurrency-max-limit", "between 1 and", id="max-limit-zero"),
    pytest.param({"container-concurrency": "1001"}, "data.container-concurrency",
                 "between 0 and container-concurrency-max-limit (1000)", id="cc-above-limit"),
    pytest.param({"revision-idle-timeout-seconds": "-1"}, "data.revision-idle-timeout-seconds",
                 "must be >= 0", id="negative-idle"),
]


@pytest.mark.parametrize(("data", "path", "reason"), DEFAULTS_ERRORS)
def test_config_defaults_errors_name_key_and_rule(data, path, reason):
    with pytest.raises(ValidationError) as info:
        parse_defaults_config(data)
    assert [(p.path, p.object) for p in info.value.problems] == [
        (path, "ConfigMap/config-defaults")]
    assert reason in info.value.problems[0].reason


def test_config_defaults_reports_every_bad_key_together():
    with pytest.raises(ValidationError) as info:
        parse_defaults_config({"container-concurrency": "x", "revision-timeout-seconds": "y"})
    assert {p.path for p in info.value.problems} == {
        "data.container-concurrency", "data.revision-timeout-seconds"}


SPEC_DEFAULTS = [
    pytest.param(RevisionSpec(), DefaultsConfig(),
                 RevisionSpec(timeout_seconds=300, container_concurrency=0),
                 id="knative-defaults-leave-start-and-idle-off"),
    pytest.param(RevisionSpec(timeout_seconds=0, container_concurrency=5),
                 DefaultsConfig(revision_timeout_seconds=120,
                                revision_response_start_timeout_seconds=60,
                                revision_idle_timeout_seconds=30),
                 RevisionSpec(container_concurrency=5, timeout_seconds=120,
                              response_start_timeout_seconds=60, idle_timeout_seconds=30),
                 id="zero-timeout-takes-default-and-start-idle-set-below-it"),
    pytest.param(RevisionSpec(timeout_seconds=20),
                 DefaultsConfig(revision_response_start_timeout_seconds=60,
                                revision_idle_timeout_seconds=30),
                 RevisionSpec(timeout_seconds=20, container_concurrency=0),
                 id="defaults-not-below-timeout-stay-unset"),
]


@pytest.mark.parametrize(("spec", "defaults", "want"), SPEC_DEFAULTS)
def test_default_revision_spec(spec, defaults, want):
    assert default_revision_spec(spec, defaults) == want


def test_default_revision_spec_names_the_user_container():
    spec = default_revision_spec(RevisionSpec((Container(image="x"),)), DefaultsConfig())
    assert spec.container.name == "user-container"


DOMAIN_CASES = [
    pytest.param({}, {}, "example.com", id="surge-default-example-com"),
    pytest.param({"_example": "x", "mycompany.com": ""}, {}, "mycompany.com",
                 id="one-default-domain"),
    pytest.param({"example.org": "selector:\n  app: nonprofit\n"}, {"app": "nonprofit"},
                 "example.org", id="selector-only-still-has-example-com-default"),
    pytest.param({"example.org": "selector:\n  app: nonprofit\n"}, {"app": "shop"},
                 "example.com", id="selector-mismatch-falls-back"),
    pytest.param({"a.com": "", "b.com": "selector: {env: prod}",
                  "c.com": "selector: {env: prod, team: x}"},
                 {"env": "prod", "team": "x"}, "c.com", id="most-specific-wins"),
    pytest.param({"z.com": "", "a.com": ""}, {}, "a.com", id="tie-alphabetically-first"),
    pytest.param({"a.com": ""}, {"networking.knative.dev/visibility": "cluster-local"},
                 "svc.cluster.local", id="cluster-local-route"),
]


@pytest.mark.parametrize(("data", "labels", "domain"), DOMAIN_CASES)
def test_config_domain_lookup(data, labels, domain):
    assert parse_domain_config(data).lookup(labels) == domain


def test_default_domain_config_is_example_com():
    assert DomainConfig() == DomainConfig((DomainEntry("example.com"),))
    assert parse_domain_config({}) == DomainConfig()


@pytest.mark.parametrize(("data", "path"), [
    pytest.param({"Bad_Domain": ""}, "data.Bad_Domain", id="not-a-domain"),
    pytest.param({"a.com": "selector: [x]"}, "data.a.com", id="selector-not-a-map"),
    pytest.param({"a.com": "selector: {"}, "data.a.com", id="bad-yaml"),
    pytest.param({"a.com": "other: 1"}, "data.a.com", id="unknown-key"),
])
def test_config_domain_errors_name_the_key(data, path):
    with pytest.raises(ValidationError) as info:
        parse_domain_config(data)
    assert [p.path for p in info.value.problems] == [path]
    assert info.value.problems[0].object == "ConfigMap/config-domain"


def test_config_autoscaler_problems_become_field_problems():
    cfg = parse_autoscaler_configmap({"stable-window": "90s"})
    assert cfg.stable_window == 90.0
    with pytest.raises(ValidationError) as info:
        parse_autoscaler_configmap({"stable-window": "2s", "max-scale-up-rate": "1"})
    assert {p.path for p in info.value.problems} == {"data.stable-window",
                                                    "data.max-scale-up-rate"}
    assert all(p.object == "ConfigMap/config-autoscaler" for p in info.value.problems)
    assert any("'2s' must be between 6s and 1h0m0s" == p.reason for p in info.value.problems)
