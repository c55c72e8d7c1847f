"""serving.reconciler: pod templates, reachability, resolved plans, routes and diffs."""

from __future__ import annotations

import json

import pytest

from activator import HostRoute as IngressRoute
from dataplane import PodAddress, RevisionKey
from serving.controller import pod_events
from serving.manifests import parse_manifests
from serving.platform import PodInfo, PodPhase
from serving.reconciler import (
    command_problems, diff_plans, endpoint_pods, ingress_routes, plan, pod_template,
    reachable_revisions,
)
from serving.state import ServingState, apply, mark_revision_ready

NOW = 1_700_000_000.0
ANN = "autoscaling.knative.dev/"


def svc(env: str = "v1", *, name: str = "", annotations: dict | None = None, traffic: str = "",
        spec: str = "", container: str = "") -> str:
    """A Service `hello` manifest, varied by the arguments."""
    meta = ""
    if name or annotations:
        meta = "    metadata:\n" + (f"      name: {name}\n" if name else "") + (
            f"      annotations: {json.dumps(annotations)}\n" if annotations else "")
    return ("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello}\n"
            f"spec:\n  template:\n{meta}    spec:\n{spec}      containers:\n"
            f"        - command: [python, app.py]\n          args: [--port, $(PORT)]\n"
            f"          env: [{{name: TARGET, value: {env}}}]\n{container}"
            + (f"  traffic:\n{traffic}" if traffic else ""))


def state_of(*manifests: str, ready: tuple[str, ...] = (), failed: tuple[str, ...] = ()
             ) -> ServingState:
    """Apply manifests in order, marking revisions ready/failed after each apply."""
    state = ServingState()
    for text in manifests:
        state = apply(state, parse_manifests(text).objects, now=NOW).state
        for name in ready:
            state = mark_revision_ready(state, RevisionKey("default", name), True)
        for name in failed:
            state = mark_revision_ready(state, RevisionKey("default", name), False, "ExitCode",
                                        "exit 1")
    return state


def rev(name: str) -> RevisionKey:
    return RevisionKey("default", name)


def test_pod_template_carries_the_container_and_the_revision_limits():
    state = state_of(svc(spec="      containerConcurrency: 3\n      timeoutSeconds: 30\n"
                              "      responseStartTimeoutSeconds: 7\n",
                         container="          readinessProbe: {httpGet: {path: /ready}}\n"))
    t = pod_template(state.revisions[rev("hello-00001")])
    assert (t.command, t.args, dict(t.env)) == (("python", "app.py"), ("--port", "$(PORT)"),
                                                {"TARGET": "v1"})
    assert (t.container_concurrency, t.timeout_s, t.response_start_timeout_s,
            t.idle_timeout_s, t.user_port) == (3, 30.0, 7.0, None, None)
    assert json.loads(t.readiness_probe_json) == {"httpGet": {"path": "/ready"}}
    assert (t.service, t.configuration) == ("hello", "hello")


DEADLINES = [
    pytest.param(None, 600.0, id="knative-default"),
    pytest.param({"serving.knative.dev/progress-deadline": "45s"}, 45.0, id="annotation"),
    pytest.param({"serving.knative.dev/progress-deadline": "2m"}, 120.0, id="minutes"),
]


@pytest.mark.parametrize(("annotations", "want_s"), DEADLINES)
def test_plan_reads_the_progress_deadline_annotation(annotations, want_s):
    state = state_of(svc(annotations=annotations))
    revision_plan = plan(state).revisions[rev("hello-00001")]
    assert revision_plan.progress_deadline_s == revision_plan.settings.progress_deadline == want_s


PINNED = "    - {revisionName: hello-00001, percent: 100}\n"
TAGGED = ("    - {revisionName: hello-00001, percent: 100}\n"
          "    - {revisionName: hello-00002, percent: 0, tag: next}\n")
REACHABILITY = [
    pytest.param([svc()], (), {"hello-00001"}, id="new-service-pending-and-routed"),
    pytest.param([svc(), svc("v2")], ("hello-00001",), {"hello-00001", "hello-00002"},
                 id="update-not-ready-yet-both"),
    pytest.param([svc(), svc("v2")], ("hello-00001", "hello-00002"), {"hello-00002"},
                 id="update-ready-old-one-unreachable"),
    pytest.param([svc(), svc("v2", traffic=PINNED)], ("hello-00001", "hello-00002"),
                 {"hello-00001", "hello-00002"}, id="pinned-old-and-pending-new"),
    pytest.param([svc(), svc("v2", traffic=TAGGED), svc("v3", traffic=TAGGED)],
                 ("hello-00001", "hello-00002", "hello-00003"),
                 {"hello-00001", "hello-00002", "hello-00003"}, id="tag-at-0-percent-reachable"),
]


@pytest.mark.parametrize(("manifests", "ready", "want"), REACHABILITY)
def test_reachable_revisions(manifests, ready, want):
    state = state_of(*manifests, ready=ready)
    assert reachable_revisions(state) == {rev(n) for n in want}


def test_a_failed_newest_revision_is_not_reachable():
    state = state_of(svc(), svc("v2"), ready=("hello-00001",), failed=("hello-00002",))
    assert reachable_revisions(state) == {rev("hello-00001")}


SCALES = [
    pytest.param({}, True, (1, 0, 0), id="defaults"),
    pytest.param({ANN + "initial-scale": "3"}, True, (3, 0, 0), id="initial-scale"),
    pytest.param({ANN + "min-scale": "2", ANN + "max-scale": "5"}, True, (2, 2, 5),
                 id="min-scale-raises-the-start"),
    pytest.param({ANN + "min-scale": "2", ANN + "initial-scale": "3"}, False, (0, 0, 0),
                 id="unreachable-ignores-min-and-initial"),
]


@pytest.mark.parametrize(("annotations", "routed", "want"), SCALES)
def test_plan_resolves_scale_bounds_and_initial_replicas(annotations, routed, want):
    manifests = [svc(annotations=annotations)]
    if not routed:  # a newer ready revision takes the route from hello-00001
        manifests.append(svc("v2"))
    state = state_of(*manifests, ready=("hello-00001", "hello-00002"))
    p = plan(state).revisions[rev("hello-00001")]
    assert (p.initial_replicas, p.settings.min_scale, p.settings.max_scale) == want
    assert p.reachable is routed and p.spec.reachable is routed


def test_plan_follows_annotations_over_config_autoscaler():
    config = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, "
              "namespace: knative-serving}\ndata: {stable-window: 20s, "
              "scale-to-zero-grace-period: 5s}\n---\n")
    state = state_of(config + svc(annotations={ANN + "window": "10s", ANN + "target": "4"}))
    p = plan(state).revisions[rev("hello-00001")]
    assert (p.spec.stable_window, p.panic_window_s, p.spec.target_value) == (10.0, 1.0, 4 * 0.7)
    assert p.settings.scale_to_zero_grace_period == 5.0


def test_ingress_routes_give_tag_hosts_no_tag_map():
    state = state_of(svc(), svc("v2", traffic=TAGGED), ready=("hello-00001", "hello-00002"))
    assert list(ingress_routes(state)) == [
        IngressRoute("hello.default.example.com", ((rev("hello-00001"), 100),),
                     {"next": rev("hello-00002")}),
        IngressRoute("next-hello.default.example.com", ((rev("hello-00002"), 100),), {}),
    ]


def test_diff_plans_names_added_changed_and_removed():
    one = plan(state_of(svc(), ready=("hello-00001",))).revisions
    two = plan(state_of(svc(), svc("v2"), ready=("hello-00001", "hello-00002"))).revisions
    diff = diff_plans(one, two)
    assert [p.key for p in diff.added] == [rev("hello-00002")]
    assert [p.key for p in diff.changed] == [rev("hello-00001")]  # now unreachable
    assert diff.removed == ()
    assert diff_plans(two, {}).removed == (rev("hello-00001"), rev("hello-00002"))


def test_command_problems_reject_an_image_only_container():
    text = svc().replace("        - command: [python, app.py]\n          args: [--port, $(PORT)]\n",
                         "        - image: registry.example/hello\n")
    state = state_of(text)
    [problem] = command_problems(state, (rev("hello-00001"),))
    assert (problem.object, problem.path) == ("Service/hello", "spec.template.spec.containers[0]")
    assert "add `command`" in problem.reason


def pod(name: str, phase: PodPhase, *, ready: bool = False, pid: int | None = 10,
        last_exit: str | None = None, backoff_s: float | None = None) -> PodInfo:
    return PodInfo(name, rev("hello-00001"), phase, ready, PodAddress("127.0.0.1", 1000, 1001),
                   1002, 1003, 1004, pid, pid and pid + 1, 1.0, 0, last_exit, "x.log", "q.log",
                   backoff_s=backoff_s)


def test_endpoint_pods_leave_out_terminating_and_failed_pods():
    pods = (pod("a", PodPhase.PENDING), pod("b", PodPhase.RUNNING, ready=True),
            pod("c", PodPhase.TERMINATING), pod("d", PodPhase.FAILED))
    assert endpoint_pods(pods) == (PodAddress("127.0.0.1", 1000, 1001),) * 2


POD_EVENTS = [
    pytest.param({}, [pod("a", PodPhase.PENDING, pid=None)], [], id="created-no-process-yet"),
    pytest.param({}, [pod("a", PodPhase.PENDING)], ["pod a started (app pid 10, queue-proxy "
                                                    "pid 11, port 1000)"], id="started"),
    pytest.param({"a": pod("a", PodPhase.PENDING)}, [pod("a", PodPhase.RUNNING, ready=True)],
                 ["pod a ready"], id="ready"),
    pytest.param({"a": pod("a", PodPhase.RUNNING, ready=True)},
                 [pod("a", PodPhase.TERMINATING)], ["pod a stopping (draining)"],
                 id="stopping"),
    pytest.param({"a": pod("a", PodPhase.RUNNING)},
                 [pod("a", PodPhase.FAILED, pid=None, last_exit="app exit 3", backoff_s=2.0)],
                 ["pod a failed: app exit 3; restarting in 2s"], id="crashed"),
    pytest.param({"a": pod("a", PodPhase.TERMINATING)}, [], ["pod a stopped"], id="stopped"),
]


@pytest.mark.parametrize(("old", "new", "want"), POD_EVENTS)
def test_pod_events_say_what_changed(old, new, want):
    assert pod_events(old, new) == want
