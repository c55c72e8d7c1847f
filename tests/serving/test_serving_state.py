"""serving.state: apply, revisions, latestReady, route resolution, status, routing table."""

from __future__ import annotations

import json
import re

import pytest

from dataplane.types import RevisionKey
from serving.manifests import parse_manifests
from serving.model import ObjectKey
from serving.state import (
    HostRoute, ObjectNotFound, ServingState, apply, delete_service, describe_service,
    mark_revision_ready, routing_table, service_status, state_from_dict, state_to_dict,
    update_service,
)
from serving.validation import ValidationError

NOW = 1_700_000_000.0
HELLO = ObjectKey("default", "hello")


def svc(env="v1", *, name="", traffic="", annotations="", meta_annotations="") -> str:
    """A Service manifest for `hello` (the seeds' shape), varied by the arguments."""
    tmeta = ""
    if name or annotations:
        tmeta = "    metadata:\n" + (f"      name: {name}\n" if name else "") + (
            f"      annotations: {annotations}\n" if annotations else "")
    extra = f", annotations: {meta_annotations}" if meta_annotations else ""
    return (f"apiVersion: serving.knative.dev/v1\nkind: Service\n"
            f"metadata: {{name: hello{extra}}}\n"
            f"spec:\n  template:\n{tmeta}    spec:\n      containers:\n"
            f"        - image: hello\n          command: [python, app.py]\n"
            f"          env: [{{name: TARGET, value: {env}}}]\n"
            + (f"  traffic:\n{traffic}" if traffic else ""))


BLUE = svc("blue", name="hello-blue",
           traffic="    - {tag: blue, revisionName: hello-blue, percent: 100}\n")
BLUE_GREEN = svc("green", name="hello-green", traffic=(
    "    - {tag: blue, revisionName: hello-blue, percent: 100}\n"
    "    - {tag: green, revisionName: hello-green, percent: 0}\n"))
CANARY = svc("v2", traffic=("    - {tag: stable, revisionName: hello-00001, percent: 80}\n"
                            "    - {tag: canary, latestRevision: true, percent: 20}\n"))
RUN_LATEST = """
apiVersion: serving.knative.dev/v1alpha1
kind: Service
metadata: {name: hello}
spec:
  runLatest:
    configuration:
      revisionTemplate:
        spec:
          container:
            image: hello
            command: [python, app.py]
            env: [{name: TARGET, value: v1}]
"""


def do(state: ServingState, text: str, t: float = 0.0):
    return apply(state, parse_manifests(text).objects, now=NOW + t)


def rk(name: str) -> RevisionKey:
    return RevisionKey("default", name)


def ready(state: ServingState, name: str, ok: bool = True) -> ServingState:
    return mark_revision_ready(state, rk(name), ok, "" if ok else "ExitCode", "" if ok else "boom")


def table(state: ServingState) -> dict[str, tuple]:
    """host -> ((revision, percent), ...) of the routing table."""
    return {h.host: tuple((k.name, p) for k, p in h.splits) for h in routing_table(state)}


@pytest.mark.parametrize("text", [pytest.param(svc(), id="v1"),
                                  pytest.param(RUN_LATEST, id="v1alpha1-runLatest")])
def test_first_apply_creates_revision_route_and_a_routable_host(text):
    result = do(ServingState(), text)
    assert result.created_revisions == (rk("hello-00001"),)
    assert [str(c) for c in result.changes] == ["revision/hello-00001 created",
                                                "service/hello created"]
    state = result.state
    assert set(state.configurations) == set(state.routes) == {HELLO}
    # Never ready yet: route to the starting revision so the activator holds requests.
    assert table(state) == {"hello.default.example.com": (("hello-00001", 100),)}
    status = service_status(state, HELLO)
    assert [(c.type, c.status) for c in status.conditions] == [
        ("ConfigurationsReady", "Unknown"), ("Ready", "Unknown"), ("RoutesReady", "Unknown")]
    state = ready(state, "hello-00001")
    status = service_status(state, HELLO)
    assert all(c.status == "True" for c in status.conditions)
    assert status.latest_ready_revision_name == "hello-00001"
    assert status.url == "http://hello.default.example.com"
    revision = state.revisions[rk("hello-00001")].to_knative()
    assert revision["metadata"]["labels"] == {
        "serving.knative.dev/configuration": "hello",
        "serving.knative.dev/configurationGeneration": "1", "serving.knative.dev/service": "hello"}
    assert revision["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert revision["spec"]["timeoutSeconds"] == 300
    assert revision["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


# Steps: (manifest or readiness event, latestCreated, latestReady, main host splits).
TIMELINES = [
    pytest.param([
        (svc("v1"), "hello-00001", "", (("hello-00001", 100),)),
        (("hello-00001", True), "hello-00001", "hello-00001", (("hello-00001", 100),)),
        (svc("v2"), "hello-00002", "hello-00001", (("hello-00001", 100),)),
        (("hello-00002", True), "hello-00002", "hello-00002", (("hello-00002", 100),)),
    ], id="update-moves-traffic-once-new-revision-is-ready"),
    pytest.param([
        (svc("v1"), "hello-00001", "", (("hello-00001", 100),)),
        (("hello-00001", True), "hello-00001", "hello-00001", (("hello-00001", 100),)),
        (svc("v2"), "hello-00002", "hello-00001", (("hello-00001", 100),)),
        (("hello-00002", False), "hello-00002", "hello-00001", (("hello-00001", 100),)),
        (svc("v3"), "hello-00003", "hello-00001", (("hello-00001", 100),)),
        (("hello-00003", True), "hello-00003", "hello-00003", (("hello-00003", 100),)),
    ], id="broken-revision-leaves-traffic-on-last-good"),
    pytest.param([
        (svc("v1"), "hello-00001", "", (("hello-00001", 100),)),
        (("hello-00001", True), "hello-00001", "hello-00001", (("hello-00001", 100),)),
        (svc("v2"), "hello-00002", "hello-00001", (("hello-00001", 100),)),
        (svc("v3"), "hello-00003", "hello-00001", (("hello-00001", 100),)),
        (("hello-00002", True), "hello-00003", "hello-00002", (("hello-00002", 100),)),
        (("hello-00001", False), "hello-00003", "hello-00002", (("hello-00002", 100),)),
        (("hello-00003", True), "hello-00003", "hello-00003", (("hello-00003", 100),)),
    ], id="latest-ready-only-moves-forward"),
    pytest.param([
        (svc("v1"), "hello-00001", "", (("hello-00001", 100),)),
        (("hello-00001", False), "hello-00001", "", None),
    ], id="never-ready-failed-service-is-not-routed"),
    pytest.param([
        (svc("v1"), "hello-00001", "", (("hello-00001", 100),)),
        (("hello-00001", True), "hello-00001", "hello-00001", (("hello-00001", 100),)),
        (CANARY, "hello-00002", "hello-00001", (("hello-00001", 100),)),
        (("hello-00002", True), "hello-00002", "hello-00002",
         (("hello-00001", 80), ("hello-00002", 20))),
    ], id="canary-80-20"),
]


@pytest.mark.parametrize("steps", TIMELINES)
def test_revisions_and_traffic_over_a_timeline(steps):
    state = ServingState()
    for i, (event, created, latest_ready, splits) in enumerate(steps):
        state = do(state, event, i).state if isinstance(event, str) else ready(state, *event)
        status = state.configurations[HELLO].status
        assert (status.latest_created_revision_name, status.latest_ready_revision_name) == (
            created, latest_ready), f"step {i}"
        assert table(state).get("hello.default.example.com") == splits, f"step {i}"


def test_canary_tags_reach_exactly_their_revision():
    state = ready(do(ServingState(), svc("v1")).state, "hello-00001")
    state = ready(do(state, CANARY, 1).state, "hello-00002")
    hosts = {h.host: h for h in routing_table(state)}
    assert hosts["stable-hello.default.example.com"] == HostRoute(
        "stable-hello.default.example.com", ((rk("hello-00001"), 100),),
        {"stable": rk("hello-00001"), "canary": rk("hello-00002")}, "stable")
    assert hosts["canary-hello.default.example.com"].splits == ((rk("hello-00002"), 100),)
    traffic = describe_service(state, HELLO)["status"]["traffic"]
    assert traffic == [
        {"tag": "stable", "revisionName": "hello-00001", "latestRevision": False, "percent": 80,
         "url": "http://stable-hello.default.example.com"},
        {"tag": "canary", "revisionName": "hello-00002", "latestRevision": True, "percent": 20,
         "url": "http://canary-hello.default.example.com"}]


def test_blue_green_keeps_blue_until_green_is_ready_then_tags_both():
    state = ready(do(ServingState(), BLUE).state, "hello-blue")
    result = do(state, BLUE_GREEN, 1)
    assert result.created_revisions == (rk("hello-green"),)
    state = result.state
    # green is still starting: the route keeps its last complete traffic (Knative).
    assert table(state) == {"hello.default.example.com": (("hello-blue", 100),),
                            "blue-hello.default.example.com": (("hello-blue", 100),)}
    state = ready(state, "hello-green")
    assert table(state) == {"hello.default.example.com": (("hello-blue", 100),),
                            "blue-hello.default.example.com": (("hello-blue", 100),),
                            "green-hello.default.example.com": (("hello-green", 100),)}


def test_reapplying_the_same_manifest_changes_nothing():
    state = do(ServingState(), svc()).state
    again = do(state, svc(), 5)
    assert again.created_revisions == ()
    assert [c.action for c in again.changes] == ["unchanged"]
    assert again.state == state


def test_traffic_only_change_bumps_service_not_configuration():
    state = ready(do(ServingState(), svc()).state, "hello-00001")
    result = do(state, svc(traffic="    - {revisionName: hello-00001, percent: 100}\n"), 1)
    assert result.created_revisions == ()
    assert result.state.services[HELLO].metadata.generation == 2
    assert result.state.configurations[HELLO].metadata.generation == 1


def test_byo_name_reused_with_a_different_spec_is_rejected_and_state_kept():
    state = do(ServingState(), svc("v1", name="hello-v1")).state
    assert set(state.revisions) == {rk("hello-v1")}
    with pytest.raises(ValidationError) as info:
        do(state, svc("v2", name="hello-v1"), 1)
    (problem,) = info.value.problems
    assert (problem.object, problem.path) == ("Service/hello", "spec.template.metadata.name")
    assert "already exists with a different template" in problem.reason
    # Back to an existing name with its own spec: no new revision, it is latest again.
    state = do(state, svc("v2", name="hello-v2"), 2).state
    result = do(state, svc("v1", name="hello-v1"), 3)
    assert result.created_revisions == ()
    assert result.state.configurations[HELLO].status.latest_created_revision_name == "hello-v1"


def test_a_rejected_batch_leaves_state_unchanged_and_lists_every_problem():
    state = ready(do(ServingState(), svc()).state, "hello-00001")
    bad_service = svc("v2", traffic="    - {latestRevision: true, percent: 90}\n")
    bad_config = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler}\n"
                  "data: {stable-window: '2s'}\n")
    good = svc("v3").replace("name: hello}", "name: other}")
    with pytest.raises(ValidationError) as info:
        do(state, "---\n".join([good, bad_service, bad_config]), 1)
    assert [str(p) for p in info.value.problems] == [
        "ConfigMap/config-autoscaler: data.stable-window: '2s' must be between 6s and 1h0m0s",
        "Service/hello: spec.traffic: traffic targets sum to 90, want 100"]
    assert do(state, svc(), 2).state == state


def test_configmaps_in_a_batch_apply_first_and_change_urls():
    domain = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-domain, namespace: "
              "knative-serving}\ndata: {mycompany.com: ''}\n")
    limit = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler}\n"
             "data: {max-scale-limit: '10', max-scale: '5'}\n")
    over = svc(annotations="{autoscaling.knative.dev/max-scale: '20'}")
    with pytest.raises(ValidationError) as info:
        do(ServingState(), over + "---\n" + limit)
    assert info.value.problems[0].path == (
        "spec.template.metadata.annotations.autoscaling.knative.dev/max-scale")
    state = do(ServingState(), svc() + "---\n" + domain).state
    assert table(state) == {"hello.default.mycompany.com": (("hello-00001", 100),)}
    assert service_status(state, HELLO).url == "http://hello.default.mycompany.com"


def test_autoscaling_annotation_on_service_metadata_is_rejected():
    with pytest.raises(ValidationError) as info:
        do(ServingState(), svc(meta_annotations="{autoscaling.knative.dev/min-scale: '1'}"))
    assert "spec.template.metadata.annotations" in str(info.value)


def test_standalone_configuration_and_route_and_name_conflicts():
    text = """
apiVersion: serving.knative.dev/v1
kind: Configuration
metadata: {name: cfg}
spec: {template: {spec: {containers: [{image: x, command: [python, app.py]}]}}}
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: rt}
spec: {traffic: [{configurationName: cfg, percent: 100, tag: main}]}
"""
    state = ready(do(ServingState(), text).state, "cfg-00001")
    assert table(state) == {"rt.default.example.com": (("cfg-00001", 100),),
                            "main-rt.default.example.com": (("cfg-00001", 100),)}
    with pytest.raises(ValidationError) as info:
        do(state, svc().replace("name: hello}", "name: cfg}"))
    assert "Configuration default/cfg already exists and is owned by no Service" in str(info.value)
    with pytest.raises(ValidationError) as info:
        do(do(state, svc()).state, text.split("---")[0].replace("name: cfg", "name: hello"))
    assert "change Service/hello" in str(info.value)


def test_missing_or_foreign_revision_in_traffic_makes_routes_not_ready():
    state = ready(do(ServingState(), svc()).state, "hello-00001")
    state = do(state, svc(traffic="    - {revisionName: hello-00009, percent: 100}\n"), 1).state
    routes = service_status(state, HELLO).conditions[-1]
    assert (routes.type, routes.status, routes.reason) == ("RoutesReady", "False",
                                                           "RevisionMissing")
    assert table(state) == {"hello.default.example.com": (("hello-00001", 100),)}
    other = svc().replace("name: hello}", "name: other}")
    state = do(state, other, 2).state
    state = ready(state, "other-00001")
    state = do(state, svc(traffic="    - {revisionName: other-00001, percent: 100}\n"), 3).state
    assert service_status(state, HELLO).conditions[-1].reason == "RevisionNotOwned"


def test_delete_service_removes_its_configuration_route_and_revisions():
    state = do(do(ServingState(), svc()).state, svc("v2"), 1).state
    state = do(state, svc().replace("name: hello}", "name: other}"), 2).state
    result = delete_service(state, "default", "hello")
    assert result.deleted_revisions == (rk("hello-00001"), rk("hello-00002"))
    assert HELLO not in result.state.services and HELLO not in result.state.routes
    assert set(result.state.revisions) == {rk("other-00001")}
    assert list(table(result.state)) == ["other.default.example.com"]
    with pytest.raises(ObjectNotFound):
        delete_service(result.state, "default", "hello")


def test_update_service_env_equals_reapplying_the_edited_manifest():
    state = ready(do(ServingState(), svc("v1")).state, "hello-00001")
    updated = update_service(state, "default", "hello", env={"TARGET": "v2"}, now=NOW + 1)
    edited = do(state, svc("v2"), 1)
    assert updated.created_revisions == edited.created_revisions == (rk("hello-00002"),)
    assert updated.state == edited.state
    removed = update_service(state, "default", "hello", env={"TARGET": None}, now=NOW + 1)
    assert removed.state.revisions[rk("hello-00002")].spec.container.env == ()


def test_update_service_tags_and_traffic_as_kn_does():
    state = ready(do(ServingState(), svc("v1")).state, "hello-00001")
    state = ready(do(state, svc("v2"), 1).state, "hello-00002")
    result = update_service(state, "default", "hello", tags={"hello-00001": "stable"},
                            traffic={"stable": 80, "@latest": 20}, now=NOW + 2)
    assert result.created_revisions == ()
    assert table(result.state)["hello.default.example.com"] == (("hello-00001", 80),
                                                                ("hello-00002", 20))
    result = update_service(result.state, "default", "hello", untags=["stable"],
                            traffic={"@latest": 100}, now=NOW + 3)
    assert [t.to_knative() for t in result.state.services[HELLO].traffic] == [
        {"latestRevision": True, "percent": 100}]
    tagged = update_service(result.state, "default", "hello", tags={"@latest": "current"},
                            now=NOW + 4)
    assert [t.to_knative() for t in tagged.state.services[HELLO].traffic] == [
        {"tag": "current", "latestRevision": True, "percent": 100}]
    with pytest.raises(ValidationError, match="no traffic target has tag 'nope'"):
        update_service(result.state, "default", "hello", untags=["nope"], now=NOW)
    with pytest.raises(ValidationError, match="sum to 50"):
        update_service(result.state, "default", "hello", traffic={"@latest": 50}, now=NOW)


UNKNOWN_REFS = [
    pytest.param({"traffic": {"ghost": 100}}, "unknown revision or tag 'ghost'",
                 id="traffic-to-neither-revision-nor-tag"),
    pytest.param({"tags": {"ghost": "t"}}, "--tag ghost=t: unknown revision 'ghost'",
                 id="tag-on-a-missing-revision"),
    pytest.param({"traffic": {"other-00001": 100}}, "unknown revision or tag 'other-00001'",
                 id="another-service's-revision"),
    pytest.param({"untags": ["stable"], "traffic": {"stable": 100}},
                 "unknown revision or tag 'stable'", id="a-tag-removed-in-the-same-update"),
]


@pytest.mark.parametrize(("edit", "message"), UNKNOWN_REFS)
def test_update_service_rejects_names_that_are_no_revision_or_tag(edit, message):
    state = ready(do(ServingState(), svc("v1")).state, "hello-00001")
    state = do(state, svc("x").replace("name: hello}", "name: other}"), 1).state
    state = update_service(state, "default", "hello", tags={"hello-00001": "stable"},
                           now=NOW + 2).state
    with pytest.raises(ValidationError, match=re.escape(message)) as exc:
        update_service(state, "default", "hello", now=NOW + 3, **edit)
    assert [p.path for p in exc.value.problems] == ["spec.traffic"]


def test_mark_ready_of_an_unknown_revision_keeps_the_state():
    state = do(ServingState(), svc()).state
    assert mark_revision_ready(state, rk("gone-00001"), True) is state


def test_snapshot_round_trips_through_json():
    state = ready(do(ServingState(), BLUE).state, "hello-blue")
    state = do(state, BLUE_GREEN + "---\n" + (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-defaults}\n"
        "data: {revision-timeout-seconds: '100'}\n"), 1).state
    state = ready(state, "hello-green", False)
    state = do(state, svc("x").replace("name: hello}", "name: other}").replace(
        "value: x}]", "value: x}]\n          readinessProbe: {httpGet: {path: /h}}"), 2).state
    snapshot = json.loads(json.dumps(state_to_dict(state)))
    again = state_from_dict(snapshot)
    assert again == state
    assert routing_table(again) == routing_table(state)
    assert describe_service(again, HELLO) == describe_service(state, HELLO)
    with pytest.raises(ValueError, match="snapshot version"):
        state_from_dict({**snapshot, "version": 99})
