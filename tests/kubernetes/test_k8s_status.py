"""Status from the cluster: revisions, configurations, routes, services, conditions."""

from __future__ import annotations

import pytest
from k8s_world import children_of

from serving.configmaps import DomainConfig, DomainEntry
from serving.kubernetes import (
    condition,
    configuration_status,
    failed_status,
    problems_message,
    revision_status,
    route_status,
    service_status,
)
from serving.validation import FieldProblem

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def _deployment(replicas=1, ready=0, conditions=()):
    return {"spec": {"replicas": replicas},
            "status": {"readyReplicas": ready, "conditions": list(conditions)}}


def _states(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c.get("reason", "")) for c in status["conditions"]}


_CRASH = {"status": {"containerStatuses": [{"name": "user-container", "state": {"waiting": {
    "reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 3,
                                                                   "message": "boom"}}}]}}
_PULL = {"status": {"containerStatuses": [{"name": "user-container", "state": {"waiting": {
    "reason": "ImagePullBackOff", "message": "no such image"}}}]}}
_UNSCHEDULABLE = {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                             "reason": "Unschedulable",
                                             "message": "0/3 nodes are available"}]}}
_AVAILABLE = [{"type": "ResourcesAvailable", "status": "True", "lastTransitionTime": T0}]
_EXIT_0 = {"status": {"containerStatuses": [{"name": "user-container", "state": {"waiting": {
    "reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 0}}}]}}
_SIDECAR_EXIT = {"status": {"containerStatuses": [
    {"name": "user-container", "state": {"running": {}}},
    {"name": "queue-proxy", "state": {"running": {}},
     "lastState": {"terminated": {"exitCode": 1, "message": "port taken"}}}]}}
_SIDECAR_PULL = {"status": {"containerStatuses": [
    {"name": "user-container", "state": {"running": {}}},
    {"name": "queue-proxy", "state": {"waiting": {"reason": "ErrImagePull",
                                                  "message": "surge-queue-proxy:dev"}}}]}}

REVISIONS = [
    # (deployment, pods, previous conditions, initial scale,
    #  {type: (status, reason)} for ResourcesAvailable, ContainerHealthy, Active, Ready)
    pytest.param(None, [], [], 1, {"ResourcesAvailable": ("Unknown", "Deploying"),
                                   "ContainerHealthy": ("Unknown", "Deploying"),
                                   "Active": ("Unknown", "Deploying"),
                                   "Ready": ("Unknown", "Deploying")}, id="no-deployment-yet"),
    pytest.param(_deployment(1, 0), [], [], 1, {"ResourcesAvailable": ("Unknown", "Deploying"),
                                                "Active": ("Unknown", "Queued"),
                                                "Ready": ("Unknown", "Deploying")},
                 id="pod-starting"),
    pytest.param(_deployment(1, 1), [], [], 1, {"ResourcesAvailable": ("True", ""),
                                                "ContainerHealthy": ("True", ""),
                                                "Active": ("True", ""), "Ready": ("True", "")},
                 id="ready"),
    pytest.param(_deployment(0, 0), [], _AVAILABLE, 1, {"ResourcesAvailable": ("True", ""),
                                                        "Active": ("False", "NoTraffic"),
                                                        "Ready": ("True", "")},
                 id="scaled-to-zero-stays-ready"),
    pytest.param(_deployment(0, 0), [], [], 0, {"Active": ("False", "NoTraffic"),
                                                "Ready": ("True", "")},
                 id="initial-scale-zero-is-ready"),
    pytest.param(_deployment(1, 0), [_PULL], [], 1,
                 {"ResourcesAvailable": ("False", "ImagePullBackOff"),
                  "Ready": ("False", "ImagePullBackOff")}, id="image-pull"),
    pytest.param(_deployment(1, 0), [_CRASH], [], 1,
                 {"ContainerHealthy": ("False", "ExitCode3"), "Ready": ("False", "ExitCode3")},
                 id="crash-loop"),
    pytest.param(_deployment(1, 0), [_UNSCHEDULABLE], [], 1,
                 {"ResourcesAvailable": ("False", "Unschedulable")}, id="unschedulable"),
    pytest.param(_deployment(1, 0, [{"type": "Progressing", "status": "False",
                                     "reason": "ProgressDeadlineExceeded"}]), [], [], 1,
                 {"ResourcesAvailable": ("False", "ProgressDeadlineExceeded"),
                  "Ready": ("False", "ProgressDeadlineExceeded")}, id="progress-deadline"),
    pytest.param(_deployment(2, 2), [_CRASH], [], 1, {"Ready": ("True", "")},
                 id="pods-not-read-when-all-ready"),
    # Knative reads pods only while none is ready: one crashing pod of three is the
    # Deployment's to replace.
    pytest.param(_deployment(3, 2), [_CRASH], [], 1,
                 {"ContainerHealthy": ("True", ""), "Ready": ("True", "")},
                 id="one-bad-pod-among-ready-ones"),
    pytest.param(_deployment(1, 0), [_EXIT_0], [], 1,
                 {"ContainerHealthy": ("False", "ExitCode0"), "Ready": ("False", "ExitCode0")},
                 id="exit-0-is-a-failure-too"),
    pytest.param(_deployment(1, 0), [_SIDECAR_EXIT], [], 1,
                 {"ContainerHealthy": ("Unknown", "Deploying")},
                 id="sidecar-exit-not-the-users-failure"),
    pytest.param(_deployment(1, 0), [_SIDECAR_PULL], [], 1,
                 {"ResourcesAvailable": ("False", "ErrImagePull")},
                 id="sidecar-image-pull-reported"),
]


@pytest.mark.parametrize(("deployment", "pods", "previous", "initial", "want"), REVISIONS)
def test_revision_status(deployment, pods, previous, initial, want):
    revision = {"metadata": {"name": "r", "generation": 1},
                "status": {"conditions": previous}}
    status = revision_status(revision, deployment, pods=pods, now=T1, initial_scale=initial)
    got = _states(status)
    assert {k: got[k] for k in want} == want
    if deployment is not None:
        assert (status["actualReplicas"], status["desiredReplicas"]) == (
            deployment["status"]["readyReplicas"], deployment["spec"]["replicas"])


def test_crash_message_names_the_exit():
    status = revision_status({"metadata": {"name": "r"}}, _deployment(1, 0), pods=[_CRASH],
                             now=T1)
    assert condition({"status": status}, "ContainerHealthy")["message"] \
        == "Container failed with: boom"
    clean = revision_status({"metadata": {"name": "r"}}, _deployment(1, 0), pods=[_EXIT_0],
                            now=T1)
    assert condition({"status": clean}, "ContainerHealthy")["message"] \
        == "Container failed with: container exited with no error"


def test_transition_time_moves_only_when_the_status_changes():
    revision = {"metadata": {"name": "r"}, "status": revision_status(
        {"metadata": {"name": "r"}}, _deployment(1, 1), now=T0)}
    again = revision_status(revision, _deployment(1, 1), now=T1)
    assert again == revision["status"]  # nothing to write on a second pass
    scaled = revision_status({**revision, "status": again}, _deployment(0, 0), now=T1)
    times = {c["type"]: c["lastTransitionTime"] for c in scaled["conditions"]}
    assert times == {"Active": T1, "ContainerHealthy": T0, "Ready": T0,
                     "ResourcesAvailable": T0}


def _revision(name: str, generation: int, ready: str | None, cfg: str = "hello") -> dict:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready,
                                            "reason": "ExitCode1" if ready == "False" else "",
                                            "message": "boom"}]
    return {"metadata": {"name": name, "namespace": "default", "labels": {
        "serving.knative.dev/configuration": cfg, "serving.knative.dev/service": cfg,
        "serving.knative.dev/configurationGeneration": str(generation)}},
        "status": {"conditions": conditions}}


CONFIGS = [
    # (revisions, previous latestReady, latest created name, want created, want ready, Ready)
    pytest.param([], "", "hello-00001", None, None, ("Unknown", "Deploying"), id="not-created"),
    pytest.param([_revision("hello-00001", 1, None)], "", "hello-00001", "hello-00001", None,
                 ("Unknown", "RevisionNotReady"), id="created-starting"),
    pytest.param([_revision("hello-00001", 1, "True")], "", "hello-00001", "hello-00001",
                 "hello-00001", ("True", ""), id="created-ready"),
    pytest.param([_revision("hello-00001", 1, "True"), _revision("hello-00002", 2, "False")],
                 "hello-00001", "hello-00002", "hello-00002", "hello-00001",
                 ("False", "RevisionFailed"), id="failed-new-keeps-old-ready"),
    pytest.param([_revision("hello-00001", 1, "True"), _revision("hello-00002", 2, "True"),
                  _revision("hello-00003", 3, None)], "hello-00001", "hello-00003",
                 "hello-00003", "hello-00002", ("Unknown", "RevisionNotReady"),
                 id="newest-ready-in-between"),
    pytest.param([_revision("hello-00001", 1, "True"), _revision("other-00005", 5, "True",
                                                                 cfg="other")],
                 "hello-00001", "hello-00001", "hello-00001", "hello-00001", ("True", ""),
                 id="other-configurations-ignored"),
]


@pytest.mark.parametrize(("revisions", "ready_before", "created_name", "created", "ready",
                          "condition_state"), CONFIGS)
def test_configuration_status(revisions, ready_before, created_name, created, ready,
                              condition_state):
    configuration = {"metadata": {"name": "hello", "generation": 3},
                     "status": {"latestReadyRevisionName": ready_before} if ready_before else {}}
    status = configuration_status(configuration, revisions, now=T0, latest_created=created_name)
    assert status.get("latestCreatedRevisionName") == created
    assert status.get("latestReadyRevisionName") == ready
    assert _states(status)["Ready"] == condition_state
    assert status["observedGeneration"] == 3


def _config(latest_created: str, latest_ready: str) -> dict:
    return {"metadata": {"name": "hello", "namespace": "default"},
            "status": {"latestCreatedRevisionName": latest_created,
                       "latestReadyRevisionName": latest_ready}}


def test_route_status_canary_split_with_tag_urls():
    _, _, route, _ = children_of("canary/2-canary.yaml")
    revisions = [_revision("hello-00001", 1, "True"), _revision("hello-00002", 2, "True")]
    status = route_status(route, [_config("hello-00002", "hello-00002")], revisions,
                          domain=DomainConfig(), now=T0)
    assert status["url"] == "http://hello.default.example.com"
    assert status["address"] == {"url": "http://hello.default.svc.cluster.local"}
    assert status["traffic"] == [
        {"tag": "current", "revisionName": "hello-00001", "latestRevision": False,
         "percent": 80, "url": "http://current-hello.default.example.com"},
        {"tag": "candidate", "revisionName": "hello-00002", "latestRevision": True,
         "percent": 20, "url": "http://candidate-hello.default.example.com"}]
    assert _states(status)["Ready"] == ("True", "")


def test_a_new_configurations_route_waits_rather_than_fails():
    # Just created: the Configuration exists but its first Revision is not stamped yet
    # (or not in the cache yet). Knative says Unknown ("waiting for a Revision"), never
    # False, which `kubectl wait` and users would read as a failure.
    _, _, route, _ = children_of("basic/service.yaml")
    cfg = _config("helloworld-python-00001", "")
    cfg["metadata"]["name"] = "helloworld-python"
    status = route_status(route, [cfg], [], domain=DomainConfig(), now=T0)
    assert _states(status)["Ready"] == ("Unknown", "RevisionNotReady")
    assert status.get("traffic", []) == []


def test_a_configuration_that_failed_before_any_ready_revision_fails_the_route():
    # A bad template: no revision will ever come, so the Route must not wait forever.
    _, _, route, _ = children_of("basic/service.yaml")
    cfg = _config("", "")
    cfg["metadata"]["name"] = "helloworld-python"
    cfg["status"]["conditions"] = [{"type": "Ready", "status": "False",
                                    "reason": "InvalidSpec"}]
    status = route_status(route, iter([cfg]), [], domain=DomainConfig(), now=T0)
    assert _states(status)["Ready"] == ("False", "RevisionMissing")
    assert _states(status)["AllTrafficAssigned"] == ("False", "RevisionMissing")
    assert "'helloworld-python' does not have any ready Revision" \
        in condition({"status": status}, "Ready")["message"]


def test_a_deleted_ready_revision_fails_the_route_rather_than_waiting():
    _, _, route, _ = children_of("basic/service.yaml")
    cfg = _config("helloworld-python-00002", "helloworld-python-00001")
    cfg["metadata"]["name"] = "helloworld-python"
    status = route_status(route, [cfg], [], domain=DomainConfig(), now=T0)
    assert _states(status)["Ready"] == ("False", "RevisionMissing")


def test_route_keeps_last_traffic_while_a_pinned_revision_is_missing():
    _, _, route, _ = children_of("blue-green/2-green.yaml")
    route["status"] = {"traffic": [{"tag": "blue", "revisionName": "blue-green-demo-blue",
                                    "latestRevision": False, "percent": 100}]}
    status = route_status(route, [], [_revision("blue-green-demo-blue", 1, "True",
                                                cfg="blue-green-demo")],
                          domain=DomainConfig((DomainEntry("example.org"),)), now=T0)
    assert _states(status)["Ready"] == ("False", "RevisionMissing")
    assert "blue-green-demo-green" in condition({"status": status}, "Ready")["message"]
    assert [t["revisionName"] for t in status["traffic"]] == ["blue-green-demo-blue"]
    assert status["url"] == "http://blue-green-demo.default.example.org"


def _child(kind: str, generation: int, observed: int, ready: str, reason: str = "") -> dict:
    return {"kind": kind, "metadata": {"name": "hello", "generation": generation},
            "status": {"observedGeneration": observed, "url": "http://hello.default.example.com",
                       "latestCreatedRevisionName": "hello-00002",
                       "latestReadyRevisionName": "hello-00001",
                       "conditions": [{"type": "Ready", "status": ready, "reason": reason}]}}


SERVICES = [
    pytest.param(_child("Configuration", 2, 2, "True"), _child("Route", 1, 1, "True"),
                 {"ConfigurationsReady": ("True", ""), "RoutesReady": ("True", ""),
                  "Ready": ("True", "")}, id="both-ready"),
    pytest.param(_child("Configuration", 2, 2, "False", "RevisionFailed"),
                 _child("Route", 1, 1, "True"),
                 {"ConfigurationsReady": ("False", "RevisionFailed"),
                  "Ready": ("False", "RevisionFailed")}, id="revision-failed"),
    pytest.param(_child("Configuration", 3, 2, "True"), _child("Route", 1, 1, "True"),
                 {"ConfigurationsReady": ("Unknown", "OutOfDate"),
                  "Ready": ("Unknown", "OutOfDate")}, id="configuration-catching-up"),
    pytest.param(_child("Configuration", 2, 2, "True"), None,
                 {"RoutesReady": ("Unknown", "OutOfDate")}, id="route-not-created"),
]


@pytest.mark.parametrize(("configuration", "route", "want"), SERVICES)
def test_service_status_propagates_children(configuration, route, want):
    service = {"metadata": {"name": "hello", "generation": 4}}
    status = service_status(service, configuration, route, now=T0)
    got = _states(status)
    assert {k: got[k] for k in want} == want
    assert status["observedGeneration"] == 4
    assert (status["latestCreatedRevisionName"], status["latestReadyRevisionName"]) == (
        "hello-00002", "hello-00001")
    if route is not None:
        assert status["url"] == "http://hello.default.example.com"


def test_bad_object_gets_false_ready_naming_the_field():
    problems = [FieldProblem("spec.template.spec.containers[0].ports[0].containerPort",
                             "8012 is a reserved port", "Service/hello")]
    status = failed_status({"metadata": {"generation": 2}}, "InvalidSpec",
                           problems_message(problems), T0)
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == ("spec.template.spec.containers[0].ports[0].containerPort: "
                                "8012 is a reserved port")
    assert status["observedGeneration"] == 2
