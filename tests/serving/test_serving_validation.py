"""serving.validation: Knative's admission rules, each problem with its field path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler import AutoscalerConfig
from serving.configmaps import DefaultsConfig
from serving.model import (
    Container, ContainerPort, EnvVar, ObjectMeta, RevisionSpec, RevisionTemplate, Route,
    Service, TrafficTarget,
)
from serving.validation import (
    FieldProblem, ValidationError, validate_route, validate_service,
)

C = Container(image="hello", command=("python", "app.py"))
GOOD = Service(ObjectMeta("hello"), RevisionTemplate(RevisionSpec((C,))))
T = "spec.template"
S = "spec.template.spec"


def spec(**kw) -> Service:
    return replace(GOOD, template=replace(GOOD.template, spec=replace(GOOD.template.spec, **kw)))


def container(**kw) -> Service:
    return spec(containers=(replace(C, **kw),))


def traffic(*targets: TrafficTarget) -> Service:
    return replace(GOOD, traffic=targets)


def template(**kw) -> Service:
    return replace(GOOD, template=replace(GOOD.template, **kw))


def latest(pct, **kw):
    return TrafficTarget(latest_revision=True, percent=pct, **kw)


def rev(name, pct, **kw):
    return TrafficTarget(revision_name=name, percent=pct, **kw)


SERVICE_CASES = [
    pytest.param(replace(GOOD, metadata=ObjectMeta("Hello")), "metadata.name",
                 "not a DNS-1035 label", id="upper-case-name"),
    pytest.param(replace(GOOD, metadata=ObjectMeta("1hello")), "metadata.name",
                 "not a DNS-1035 label", id="name-starts-with-digit"),
    pytest.param(replace(GOOD, metadata=ObjectMeta("h" * 58)), "metadata.name",
                 "would not fit", id="name-leaves-no-room-for-revisions"),
    pytest.param(replace(GOOD, metadata=ObjectMeta("hello", "Bad_NS")), "metadata.namespace",
                 "DNS-1123", id="bad-namespace"),
    pytest.param(replace(GOOD, metadata=ObjectMeta(
        "hello", annotations={"autoscaling.knative.dev/min-scale": "1"})),
        "metadata.annotations.autoscaling.knative.dev/min-scale",
        "spec.template.metadata.annotations", id="autoscaling-annotation-on-service"),
    pytest.param(template(annotations={"autoscaling.knative.dev/min-scale": "-1"}),
                 f"{T}.metadata.annotations.autoscaling.knative.dev/min-scale", "-1",
                 id="bad-template-annotation"),
    pytest.param(template(annotations={"serving.knative.dev/progress-deadline": "1.5s"}),
                 f"{T}.metadata.annotations.serving.knative.dev/progress-deadline",
                 "positive duration of whole seconds", id="progress-deadline-fractional"),
    pytest.param(template(annotations={"serving.knative.dev/progress-deadline": "0s"}),
                 f"{T}.metadata.annotations.serving.knative.dev/progress-deadline",
                 "'0s' must be a positive", id="progress-deadline-zero"),
    pytest.param(template(annotations={"serving.knative.dev/progress-deadline": "10"}),
                 f"{T}.metadata.annotations.serving.knative.dev/progress-deadline",
                 "'10' must be", id="progress-deadline-without-unit"),
    pytest.param(template(name="other-v1"), f"{T}.metadata.name", "must start with 'hello-'",
                 id="byo-name-without-parent-prefix"),
    pytest.param(template(name="hello_v1"), f"{T}.metadata.name", "DNS-1035",
                 id="byo-name-not-a-label"),
    pytest.param(spec(containers=()), f"{S}.containers", "one container is required",
                 id="no-container"),
    pytest.param(spec(containers=(C, C)), f"{S}.containers", "not supported yet",
                 id="two-containers"),
    pytest.param(container(image="", command=()), f"{S}.containers[0]",
                 "set image", id="nothing-to-run"),
    pytest.param(container(name="queue-proxy"), f"{S}.containers[0].name", "reserved",
                 id="reserved-container-name"),
    pytest.param(container(ports=(ContainerPort(8012),)),
                 f"{S}.containers[0].ports[0].containerPort", "8012 is a reserved port",
                 id="reserved-port-8012"),
    pytest.param(container(ports=(ContainerPort(9091),)),
                 f"{S}.containers[0].ports[0].containerPort", "reserved", id="reserved-port-9091"),
    pytest.param(container(ports=(ContainerPort(70000),)),
                 f"{S}.containers[0].ports[0].containerPort", "outside [0, 65535]",
                 id="port-out-of-range"),
    pytest.param(container(ports=(ContainerPort(8080), ContainerPort(8081))),
                 f"{S}.containers[0].ports", "single port", id="two-ports"),
    pytest.param(container(ports=(ContainerPort(8080, name="grpc"),)),
                 f"{S}.containers[0].ports[0].name", "h2c or http1", id="bad-port-name"),
    pytest.param(container(env=(EnvVar("PORT", "1"),)), f"{S}.containers[0].env[0].name",
                 "reserved environment variable", id="reserved-env-PORT"),
    pytest.param(container(env=(EnvVar("A", "1"), EnvVar("K_REVISION", "x"))),
                 f"{S}.containers[0].env[1].name", "reserved", id="reserved-env-K_REVISION"),
    pytest.param(container(env=(EnvVar("", "1"),)), f"{S}.containers[0].env[0].name",
                 "missing", id="env-without-name"),
    pytest.param(container(readiness_probe={"httpGet": {"port": 9000}}),
                 f"{S}.containers[0].readinessProbe.httpGet.port", "must be the container port",
                 id="probe-on-other-port"),
    pytest.param(spec(container_concurrency=1001), f"{S}.containerConcurrency",
                 "outside [0, 1000]", id="cc-above-limit"),
    pytest.param(spec(container_concurrency=-1), f"{S}.containerConcurrency", "outside",
                 id="cc-negative"),
    pytest.param(spec(timeout_seconds=601), f"{S}.timeoutSeconds", "outside [0, 600]",
                 id="timeout-above-max"),
    pytest.param(spec(timeout_seconds=60, response_start_timeout_seconds=61),
                 f"{S}.responseStartTimeoutSeconds", "may not exceed", id="response-start-gt"),
    pytest.param(spec(idle_timeout_seconds=301), f"{S}.idleTimeoutSeconds",
                 "outside [0, 300]", id="idle-above-default-timeout"),
    pytest.param(traffic(latest(50)), "spec.traffic", "sum to 50, want 100", id="sum-below-100"),
    pytest.param(traffic(latest(100), rev("hello-00001", 10)), "spec.traffic", "sum to 110",
                 id="sum-above-100"),
    pytest.param(traffic(latest(150), rev("hello-00001", -50)), "spec.traffic[0].percent",
                 "outside [0, 100]", id="percent-out-of-range"),
    pytest.param(traffic(TrafficTarget(configuration_name="hello", percent=100)),
                 "spec.traffic[0].configurationName", "must not be set in a Service",
                 id="configuration-name-in-service"),
    pytest.param(traffic(TrafficTarget(revision_name="hello-00001", latest_revision=True,
                                       percent=100)),
                 "spec.traffic[0].latestRevision", "requires revisionName to be empty",
                 id="latest-true-with-revision"),
    pytest.param(traffic(TrafficTarget(latest_revision=False, percent=100)),
                 "spec.traffic[0].latestRevision", "requires revisionName",
                 id="latest-false-without-revision"),
    pytest.param(traffic(latest(50, tag="a"), rev("hello-00001", 50, tag="a")),
                 "spec.traffic[1].tag", "multiple definitions for 'a'", id="duplicate-tag"),
    pytest.param(traffic(latest(100, tag="Canary")), "spec.traffic[0].tag", "DNS-1035",
                 id="tag-not-a-label"),
    pytest.param(traffic(latest(100, url="http://x")), "spec.traffic[0].url", "must not be set",
                 id="url-in-spec"),
    pytest.param(traffic(rev("bad name", 100)), "spec.traffic[0].revisionName",
                 "not a qualified name", id="revision-name-not-qualified"),
]


@pytest.mark.parametrize(("svc", "path", "reason"), SERVICE_CASES)
def test_service_problem_names_path_and_reason(svc, path, reason):
    problems = validate_service(svc, DefaultsConfig(), AutoscalerConfig())
    assert any(p.path == path and reason in p.reason for p in problems), problems
    assert all(p.object == f"Service/{svc.metadata.name}" for p in problems)


VALID = [
    pytest.param(GOOD, id="minimal"),
    pytest.param(container(image="", command=("python", "app.py")), id="command-without-image"),
    pytest.param(container(command=(), image="docker.io/{username}/hello"), id="image-only"),
    pytest.param(traffic(rev("hello-00001", 80, tag="stable"), latest(20, tag="canary")),
                 id="canary-80-20"),
    pytest.param(traffic(rev("hello-blue", 100, tag="blue"), rev("hello-green", 0, tag="green")),
                 id="blue-green-100-0"),
    pytest.param(template(name="hello-v2",
                          annotations={"autoscaling.knative.dev/min-scale": "1",
                                       "autoscaling.knative.dev/target": "10"}),
                 id="byo-name-and-template-annotations"),
    pytest.param(template(annotations={"serving.knative.dev/progress-deadline": "2m30s"}),
                 id="progress-deadline"),
    pytest.param(spec(container_concurrency=0, timeout_seconds=600,
                      response_start_timeout_seconds=600, idle_timeout_seconds=0),
                 id="limits-at-their-bounds"),
]


@pytest.mark.parametrize("svc", VALID)
def test_valid_services_have_no_problems(svc):
    assert validate_service(svc, DefaultsConfig(), AutoscalerConfig()) == []


def test_limits_follow_config_defaults_and_config_autoscaler():
    defaults = DefaultsConfig(container_concurrency_max_limit=10,
                              allow_container_concurrency_zero=False)
    problems = validate_service(spec(container_concurrency=0), defaults, AutoscalerConfig())
    assert [p.reason for p in problems] == [
        "0 is outside [1, 10] (config-defaults container-concurrency-max-limit)"]
    anns = {"autoscaling.knative.dev/max-scale": "20"}
    assert validate_service(template(annotations=anns), DefaultsConfig(), AutoscalerConfig()) == []
    limited = AutoscalerConfig(max_scale_limit=10)
    assert validate_service(template(annotations=anns), DefaultsConfig(), limited)


ROUTE_CASES = [
    pytest.param((TrafficTarget(percent=100),), "spec.traffic[0]", "got neither",
                 id="neither-revision-nor-configuration"),
    pytest.param((TrafficTarget(revision_name="a-1", configuration_name="a", percent=100),),
                 "spec.traffic[0]", "got both", id="both-revision-and-configuration"),
    pytest.param((), "spec.traffic", "sum to 0", id="empty-route-traffic"),
]


@pytest.mark.parametrize(("targets", "path", "reason"), ROUTE_CASES)
def test_route_problem_names_path_and_reason(targets, path, reason):
    problems = validate_route(Route(ObjectMeta("rt"), targets))
    assert any(p.path == path and reason in p.reason for p in problems), problems


def test_validation_error_lists_every_problem_one_per_line():
    problems = validate_service(
        replace(container(ports=(ContainerPort(8012),)), traffic=(latest(90),)),
        DefaultsConfig(), AutoscalerConfig())
    err = ValidationError(problems)
    assert str(err).splitlines() == [
        "Service/hello: spec.template.spec.containers[0].ports[0].containerPort: 8012 is a "
        "reserved port (the queue-proxy's), please use a different value",
        "Service/hello: spec.traffic: traffic targets sum to 90, want 100",
    ]
    assert isinstance(err, ValueError) and err.problems == tuple(problems)
    assert str(FieldProblem("a.b", "why")) == "a.b: why"
