"""Revision routingState from the Routes' status traffic (serving.kubernetes.routing)."""

from __future__ import annotations

import copy

import pytest
from k8s_world import children_of

from serving.kubernetes import make_deployment, make_private_service, revision_model
from serving.kubernetes.routing import (
    ROUTES_ANNOTATION,
    ROUTING_STATE_MODIFIED_ANNOTATION,
    configuration_routes,
    routed_revisions,
    routing_state,
    with_routes_annotation,
    with_routing_state,
)

STATE = "serving.knative.dev/routingState"
NOW = "2024-05-01T12:00:00Z"


def revision(name="hello-00001", state=None, routes=None, ns="default"):
    labels = {STATE: state} if state else {}
    annotations = {ROUTES_ANNOTATION: routes} if routes else {}
    meta = {"name": name, "namespace": ns, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Revision", "metadata": meta}


def route(name, *targets, ns="default", deleting=False):
    meta = {"name": name, "namespace": ns}
    if deleting:
        meta["deletionTimestamp"] = NOW
    return {"metadata": meta, "status": {"traffic": [
        {"revisionName": rev, "percent": pct, **({"tag": tag} if tag else {})}
        for rev, pct, tag in targets]}}


STATE_CASES = [
    pytest.param(revision(state="pending"), [], ("pending", ()), id="new-not-routed"),
    pytest.param(revision(state="pending"), [route("hello", ("hello-00001", 100, ""))],
                 ("active", ("hello",)), id="routed-becomes-active"),
    pytest.param(revision(state="pending"), [route("hello", ("hello-00001", 0, "canary"))],
                 ("active", ("hello",)), id="tag-at-zero-percent-is-active"),
    pytest.param(revision(state="active", routes="hello"),
                 [route("hello", ("hello-00002", 100, ""))], ("reserve", ()),
                 id="lost-its-traffic-is-reserve"),
    pytest.param(revision(state="reserve"), [route("hello", ("hello-00001", 10, ""))],
                 ("active", ("hello",)), id="routed-again-is-active"),
    pytest.param(revision(state="reserve"), [], ("reserve", ()), id="reserve-stays"),
    pytest.param(revision(), [], ("pending", ()), id="unlabelled-not-routed-is-pending"),
    pytest.param(revision(state="active", routes="hello"),
                 [route("hello", ("hello-00001", 100, ""), deleting=True)], ("reserve", ()),
                 id="route-being-deleted-releases-it"),
    pytest.param(revision(state="active", routes="hello"),
                 [route("hello", ("hello-00001", 100, ""), ns="other")], ("reserve", ()),
                 id="same-name-in-another-namespace-does-not-count"),
    pytest.param(revision(state="pending"),
                 [route("b", ("hello-00001", 50, "")), route("a", ("hello-00001", 0, "x")),
                  route("c", ("other-00001", 100, ""))],
                 ("active", ("a", "b")), id="several-routes-sorted"),
]


@pytest.mark.parametrize(("rev", "routes", "expected"), STATE_CASES)
def test_routing_state(rev, routes, expected):
    assert routing_state(rev, routes) == expected


def test_routed_revisions_are_the_status_traffic_names():
    r = route("hello", ("hello-00001", 80, ""), ("hello-00002", 20, "v2"))
    r["spec"] = {"traffic": [{"revisionName": "hello-00003", "percent": 100}]}
    assert routed_revisions(r) == {"hello-00001", "hello-00002"}


RELABEL_CASES = [
    pytest.param(revision(state="pending"), [route("hello", ("hello-00001", 100, ""))],
                 ("active", "hello", NOW), id="pending-to-active-stamps-time"),
    pytest.param(revision(state="active", routes="hello"),
                 [route("hello", ("hello-00002", 100, ""))], ("reserve", None, NOW),
                 id="active-to-reserve-drops-routes"),
    pytest.param(revision(state="active", routes="a"),
                 [route("a", ("hello-00001", 100, "")), route("b", ("hello-00001", 0, "t"))],
                 ("active", "a,b", None), id="second-route-same-state-no-new-time"),
]


@pytest.mark.parametrize(("rev", "routes", "expected"), RELABEL_CASES)
def test_with_routing_state_relabels(rev, routes, expected):
    before = copy.deepcopy(rev)
    out = with_routing_state(rev, routes, NOW)
    annotations = out["metadata"].get("annotations") or {}
    assert (out["metadata"]["labels"][STATE], annotations.get(ROUTES_ANNOTATION),
            annotations.get(ROUTING_STATE_MODIFIED_ANNOTATION)) == expected
    assert rev == before  # the cached object is not touched
    assert with_routing_state(out, routes, "2030-01-01T00:00:00Z") is None  # now settled


@pytest.mark.parametrize(("rev", "routes"), [
    pytest.param(revision(state="pending"), [], id="pending"),
    pytest.param(revision(state="active", routes="hello"),
                 [route("hello", ("hello-00001", 100, ""))], id="active"),
])
def test_with_routing_state_is_none_when_right(rev, routes):
    assert with_routing_state(rev, routes, NOW) is None


@pytest.mark.parametrize("routes", [
    pytest.param([route("helloworld-python", ("helloworld-python-00001", 100, ""))], id="active"),
    pytest.param([], id="reserve"),
])
def test_routing_bookkeeping_never_changes_the_deployment(routes):
    # A changed pod template would roll the revision's pods on every traffic change.
    _, _, _, rev = children_of("basic/service.yaml")
    rev["metadata"]["labels"][STATE] = "active"  # reserve once no route names it
    relabelled = with_routing_state(rev, routes, NOW) or rev
    assert make_deployment(revision_model(relabelled), "rev-uid") \
        == make_deployment(revision_model(rev), "rev-uid")
    # Nor the private Service, which the autoscaler annotates meanwhile.
    assert make_private_service(relabelled) == make_private_service(rev)


def configuration(name="hello", routes=None, ns="default"):
    meta = {"name": name, "namespace": ns}
    if routes:
        meta["annotations"] = {ROUTES_ANNOTATION: routes}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Configuration", "metadata": meta}


def spec_route(name, *, configuration_name=None, revision_name=None, ns="default"):
    target = {"percent": 100}
    if configuration_name:
        target["configurationName"] = configuration_name
    if revision_name:
        target["revisionName"] = revision_name
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"traffic": [target]}}


REVISION_CONFIGS = {"hello-00001": "hello", "hello-00002": "hello", "other-00001": "other"}
CONFIG_ROUTES = [
    pytest.param([spec_route("hello", configuration_name="hello")], ("hello",),
                 id="by-configuration-name"),
    pytest.param([route("pinned", ("hello-00001", 100, None))], ("pinned",),
                 id="by-a-revision-in-status"),
    pytest.param([spec_route("b", revision_name="hello-00002"),
                  spec_route("a", configuration_name="hello")], ("a", "b"), id="sorted"),
    pytest.param([spec_route("x", configuration_name="other"),
                  route("y", ("other-00001", 100, None))], (), id="other-configuration"),
    pytest.param([spec_route("hello", configuration_name="hello", ns="prod")], (),
                 id="other-namespace"),
    pytest.param([route("gone", ("hello-00001", 100, None), deleting=True)], (),
                 id="route-being-deleted"),
]


@pytest.mark.parametrize(("routes", "expected"), CONFIG_ROUTES)
def test_configuration_routes(routes, expected):
    assert configuration_routes(configuration(), routes, REVISION_CONFIGS) == expected


def test_with_routes_annotation_sets_clears_and_is_none_when_right():
    routes = [spec_route("hello", configuration_name="hello")]
    annotated = with_routes_annotation(configuration(), routes, REVISION_CONFIGS)
    assert annotated["metadata"]["annotations"] == {ROUTES_ANNOTATION: "hello"}
    assert with_routes_annotation(annotated, routes, REVISION_CONFIGS) is None
    cleared = with_routes_annotation(annotated, [], REVISION_CONFIGS)
    assert "annotations" not in cleared["metadata"]

