"""The pure readings the Kubernetes autoscaler and activator take off the cluster: pods of
private EndpointSlices (ready ones, or not-ready ones too), whether a revision allows
Knative's probe optimisation, the published mode, and routes from Route status."""

from __future__ import annotations

import copy

import pytest
from k8s_world import children_of

from activator import HostRoute
from dataplane import Mode, PodAddress, RevisionKey
from serving.kubernetes import tag_service_name
from serving.kubernetes.endpoints import MODE_ANNOTATION, host_routes, mode_annotation, \
    mode_of, probe_optimisation, revision_of_slice, slice_pods

A, B = RevisionKey("default", "hello-00001"), RevisionKey("default", "hello-00002")


def ep(ip, **conditions):
    return {"addresses": [ip], "conditions": conditions, "targetRef": {"name": f"pod-{ip}"}}


SLICE_CASES = [
    pytest.param([{"endpoints": [ep("10.0.0.1", ready=True)]}],
                 [PodAddress("10.0.0.1", 8012, 9090)], id="no-ports-named-knative-defaults"),
    pytest.param([{"ports": [{"name": "http", "port": 81}, {"name": "http-autometric",
                                                             "port": 91}],
                   "endpoints": [ep("10.0.0.1", ready=True)]}],
                 [PodAddress("10.0.0.1", 81, 91)], id="named-ports-used"),
    pytest.param([{"endpoints": [ep("10.0.0.1"), ep("10.0.0.2", ready=False),
                                 ep("10.0.0.3", ready=True, terminating=True)]}],
                 [PodAddress("10.0.0.1", 8012, 9090)], id="unset-ready-is-ready-not-ready-and-"
                                                           "terminating-left-out"),
    pytest.param([{"endpoints": [ep("10.0.0.2", ready=True)]},
                  {"endpoints": [ep("10.0.0.1", ready=True), ep("10.0.0.2", ready=True)]}],
                 [PodAddress("10.0.0.1", 8012, 9090), PodAddress("10.0.0.2", 8012, 9090)],
                 id="several-slices-merged-sorted-deduplicated"),
    pytest.param([{"endpoints": [{"addresses": [], "conditions": {"ready": True}}]}], [],
                 id="no-address-no-pod"),
]


@pytest.mark.parametrize("slices, want", SLICE_CASES)
def test_slice_pods(slices, want):
    pods = slice_pods(slices)
    assert [p.address for p in pods] == want
    assert all(p.ready for p in pods)


# Every endpoint not terminating, as (ip, pod name, ready); the default keeps the ready ones.
ALL_CASES = [
    pytest.param([{"endpoints": [ep("10.0.0.1"), ep("10.0.0.2", ready=False),
                                 ep("10.0.0.3", ready=True, terminating=True),
                                 ep("10.0.0.4", ready=False, terminating=True)]}],
                 [("10.0.0.1", "pod-10.0.0.1", True), ("10.0.0.2", "pod-10.0.0.2", False)],
                 id="not-ready-kept-terminating-never"),
    pytest.param([{"endpoints": [ep("10.0.0.2", ready=False), ep("10.0.0.1", ready=False)]}],
                 [("10.0.0.1", "pod-10.0.0.1", False), ("10.0.0.2", "pod-10.0.0.2", False)],
                 id="cold-start-none-ready-yet-sorted"),
    pytest.param([{"endpoints": [ep("10.0.0.1", ready=False)]},
                  {"endpoints": [ep("10.0.0.1", ready=True)]}],
                 [("10.0.0.1", "pod-10.0.0.1", True)], id="listed-twice-ready-wins"),
    pytest.param([{"endpoints": [ep("10.0.0.1", ready=True)]},
                  {"endpoints": [ep("10.0.0.1", ready=False)]}],
                 [("10.0.0.1", "pod-10.0.0.1", True)], id="listed-twice-ready-wins-either-order"),
    pytest.param([{"endpoints": [ep("10.0.0.1", ready=False)]},
                  {"endpoints": [ep("10.0.0.1", ready=False)]}],
                 [("10.0.0.1", "pod-10.0.0.1", False)], id="listed-twice-not-ready-once"),
    pytest.param([{"endpoints": [{"addresses": ["10.0.0.1"]}]}], [("10.0.0.1", "", True)],
                 id="no-conditions-no-target-ready-unnamed"),
    pytest.param([{"endpoints": [{"addresses": [], "conditions": {"ready": False}}]}], [],
                 id="not-ready-without-address-no-pod"),
    pytest.param([], [], id="no-slices"),
]


@pytest.mark.parametrize("include_not_ready", [True, False])
@pytest.mark.parametrize("slices, want", ALL_CASES)
def test_slice_pods_include_not_ready(slices, want, include_not_ready):
    got = [(p.address.host, p.pod_name, p.ready)
           for p in slice_pods(slices, include_not_ready=include_not_ready)]
    assert got == (want if include_not_ready else [w for w in want if w[2]])


def revision(*containers):
    return {"metadata": {"name": "hello-00001", "namespace": "default"},
            "spec": {"containers": list(containers)}}


HTTP_GET = {"httpGet": {"path": "/ready"}}
EXEC = {"exec": {"command": ["cat", "/srv/ready"]}}

PROBE_OPTIMISATION_CASES = [
    pytest.param(revision({"image": "app"}), True, id="no-probes"),
    pytest.param(revision({"readinessProbe": HTTP_GET}), True, id="http-readiness"),
    pytest.param(revision({"readinessProbe": {"tcpSocket": {}}}), True, id="tcp-readiness"),
    pytest.param(revision({"readinessProbe": EXEC}), False, id="exec-readiness-off"),
    pytest.param(revision({"readinessProbe": {"exec": None, "tcpSocket": {}}}), True,
                 id="exec-null-is-no-exec"),
    pytest.param(revision({"startupProbe": HTTP_GET}), False, id="startup-probe-off"),
    pytest.param(revision({"readinessProbe": HTTP_GET, "startupProbe": {"tcpSocket": {}}}),
                 False, id="startup-probe-beside-http-readiness-off"),
    pytest.param(revision({"image": "app"}, {"image": "side", "startupProbe": HTTP_GET}),
                 False, id="startup-probe-on-any-container-off"),
    pytest.param(revision({"image": "app"}, {"image": "side", "readinessProbe": EXEC}),
                 False, id="exec-readiness-on-any-container-off"),
    pytest.param(revision({"livenessProbe": EXEC}), True, id="exec-liveness-does-not-matter"),
    pytest.param({"metadata": {"name": "x"}}, True, id="no-spec"),
    pytest.param(revision("junk", {"readinessProbe": "junk"}), True,
                 id="malformed-entries-ignored"),
]


@pytest.mark.parametrize("obj, want", PROBE_OPTIMISATION_CASES)
def test_probe_optimisation(obj, want):
    assert probe_optimisation(obj) is want


def test_probe_optimisation_reads_a_stored_revision():
    stored = children_of("basic/service.yaml")[3]
    assert probe_optimisation(stored) is True
    slow = copy.deepcopy(stored)
    slow["spec"]["containers"][0]["startupProbe"] = {"tcpSocket": {"port": 8080}}
    assert probe_optimisation(slow) is False


@pytest.mark.parametrize("service, want", [
    pytest.param("hello-00001-private", A, id="private-service"),
    pytest.param("hello-00001", None, id="other-service"),
    pytest.param("-private", None, id="bare-suffix"),
])
def test_revision_of_slice(service, want):
    obj = {"metadata": {"namespace": "default",
                        "labels": {"kubernetes.io/service-name": service}}}
    assert revision_of_slice(obj) == want


@pytest.mark.parametrize("annotations, want", [
    pytest.param({MODE_ANNOTATION: "Serve"}, Mode.SERVE, id="serve"),
    pytest.param({MODE_ANNOTATION: "Proxy"}, Mode.PROXY, id="proxy"),
    pytest.param({}, Mode.PROXY, id="unset-is-proxy"),
    pytest.param({MODE_ANNOTATION: "serve"}, Mode.PROXY, id="unknown-is-proxy"),
])
def test_mode_of(annotations, want):
    assert mode_of({"metadata": {"annotations": annotations}}) is want


@pytest.mark.parametrize("mode", [Mode.PROXY, Mode.SERVE])
def test_mode_annotation_round_trips(mode):
    assert mode_of(mode_annotation(mode)) is mode


def route(traffic, url="http://hello.default.example.com"):
    return {"metadata": {"name": "hello", "namespace": "default"},
            "status": {"url": url, "traffic": traffic}}


SPLIT = ((A, 80), (B, 20))
IN_CLUSTER = ("hello.default.svc.cluster.local", "hello.default.svc", "hello.default")


def tag_hosts(tag):
    return (f"{tag}-hello.default.svc.cluster.local", f"{tag}-hello.default.svc",
            f"{tag}-hello.default")


ROUTE_CASES = [
    pytest.param(route([{"revisionName": "hello-00001", "percent": 80},
                        {"revisionName": "hello-00002", "percent": 20, "tag": "candidate",
                         "url": "http://candidate-hello.default.example.com"}]),
                 [HostRoute(h, SPLIT, {"candidate": B})
                  for h in ("hello.default.example.com", *IN_CLUSTER)]
                 + [HostRoute(h, ((B, 100),)) for h in sorted(
                     ("candidate-hello.default.example.com", *tag_hosts("candidate")))],
                 id="split-with-tag"),
    pytest.param(route([{"revisionName": "hello-00001", "percent": 100},
                        {"revisionName": "hello-00001", "percent": 0, "tag": "current"}]),
                 [HostRoute(h, ((A, 100),), {"current": A})
                  for h in ("hello.default.example.com", *IN_CLUSTER)]
                 + [HostRoute(h, ((A, 100),)) for h in sorted(tag_hosts("current"))],
                 id="tag-without-url-in-cluster-tag-hosts"),
    pytest.param(route([{"revisionName": "hello-00001", "percent": 100, "tag": "a",
                         "url": "http://a-hello.default.svc.cluster.local"},
                        {"revisionName": "hello-00002", "percent": 0, "tag": "b"}],
                       url="http://hello.default.svc.cluster.local"),
                 [HostRoute(h, ((A, 100),), {"a": A, "b": B}) for h in IN_CLUSTER]
                 + [HostRoute(h, ((A, 100),)) for h in sorted(tag_hosts("a"))]
                 + [HostRoute(h, ((B, 100),)) for h in sorted(tag_hosts("b"))],
                 id="cluster-local-route-url-and-tag-url-not-doubled"),
    pytest.param({**route([{"revisionName": "hello-00001", "percent": 100, "tag": "t" * 40}]),
                  "metadata": {"name": "r" * 40, "namespace": "default"}},
                 [HostRoute(h, ((A, 100),), {"t" * 40: A})
                  for h in ("hello.default.example.com", f"{'r' * 40}.default.svc.cluster.local",
                            f"{'r' * 40}.default.svc", f"{'r' * 40}.default")]
                 + [HostRoute(f"{tag_service_name('r' * 40, 't' * 40)}.default{s}", ((A, 100),))
                    for s in sorted((".svc.cluster.local", ".svc", ""))],
                 id="long-tag-host-shortened-as-its-service-name"),
    pytest.param(route([{"revisionName": "hello-00001", "percent": 50},
                        {"revisionName": "hello-00001", "percent": 50}]),
                 [HostRoute(h, ((A, 100),)) for h in ("hello.default.example.com", *IN_CLUSTER)],
                 id="same-revision-twice-summed"),
    pytest.param(route([]), [], id="no-traffic-yet"),
    pytest.param(route([{"revisionName": "hello-00001", "percent": 60}]), [],
                 id="percents-not-100-not-served"),
    pytest.param(route([{"revisionName": "hello-00001", "percent": 100}], url=None),
                 [HostRoute(h, ((A, 100),)) for h in IN_CLUSTER], id="no-url-in-cluster-only"),
]


@pytest.mark.parametrize("obj, want", ROUTE_CASES)
def test_host_routes(obj, want):
    assert list(host_routes(obj)) == want
