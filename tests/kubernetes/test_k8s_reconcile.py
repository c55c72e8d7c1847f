"""Reconcile plans: create, no-op, update on drift, prune orphans, conflicts, idempotence."""

from __future__ import annotations

import copy
import itertools

import pytest
from k8s_world import children_of

from serving.kubernetes import (
    Conflict,
    Create,
    Delete,
    Update,
    UpdateStatus,
    is_derivative,
    make_deployment,
    make_private_service,
    object_key,
    plan,
    plan_status,
    revision_model,
)

OWNER = "rev-uid"


class FakeAPIServer:
    """Stores objects as an API server would: uid, resourceVersion, defaulted fields,
    zero-valued fields dropped (Go's omitempty)."""

    def __init__(self) -> None:
        self.objects: dict[tuple, dict] = {}
        self._ids = itertools.count(1)

    def _store(self, obj: dict, uid: str) -> None:
        out = _omit_empty(copy.deepcopy(obj))
        meta = out["metadata"]
        meta.update(uid=uid, resourceVersion=str(next(self._ids)))
        if out["kind"] == "Deployment":
            out["spec"].setdefault("replicas", 1)
            out["spec"]["strategy"]["rollingUpdate"].setdefault("maxSurge", "25%")
            pod = out["spec"]["template"]["spec"]
            pod.setdefault("restartPolicy", "Always")
            pod.setdefault("dnsPolicy", "ClusterFirst")
            for c in pod["containers"]:
                c.setdefault("imagePullPolicy", "IfNotPresent")
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                for p in c.get("ports", []):
                    p.setdefault("protocol", "TCP")
                for e in c.get("env", []):
                    if "valueFrom" in e:
                        e["valueFrom"]["fieldRef"].setdefault("apiVersion", "v1")
                probe = c.get("readinessProbe")
                if probe:
                    for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10),
                                 ("successThreshold", 1), ("failureThreshold", 3)):
                        probe.setdefault(k, v)
        if out["kind"] == "Service":
            out["spec"].setdefault("type", "ClusterIP")
            out["spec"].setdefault("sessionAffinity", "None")
            if out["spec"].get("clusterIP") != "None":
                out["spec"]["clusterIP"] = "10.96.0.12"
        self.objects[object_key(out)] = out

    def apply(self, actions) -> None:
        for action in actions:
            if isinstance(action, Create):
                assert object_key(action.obj) not in self.objects, "create of an existing name"
                self._store(action.obj, f"uid-{next(self._ids)}")
            elif isinstance(action, Update):
                key = object_key(action.obj)
                current = self.objects[key]["metadata"]
                assert action.obj["metadata"]["resourceVersion"] == current["resourceVersion"]
                self._store(action.obj, current["uid"])
            elif isinstance(action, Delete):
                key = (action.api_version, action.kind, action.namespace, action.name)
                assert self.objects[key]["metadata"]["uid"] == action.uid
                del self.objects[key]

    def listed(self) -> list[dict]:
        return [copy.deepcopy(o) for o in self.objects.values()]


def _omit_empty(value):
    if isinstance(value, dict):
        return {k: _omit_empty(v) for k, v in value.items() if not (v == "" or v is False)}
    if isinstance(value, list):
        return [_omit_empty(v) for v in value]
    return value


def _desired(path: str = "autoscaling/service.yaml") -> list[dict]:
    *_, revision = children_of(path)
    revision["metadata"]["uid"] = OWNER
    return [make_deployment(revision_model(revision), OWNER), make_private_service(revision)]


def _kinds(actions) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.obj["kind"] if hasattr(a, "obj") else a.kind) for a in actions]


def _api_with(desired: list[dict]) -> FakeAPIServer:
    api = FakeAPIServer()
    api.apply(plan(desired, [], owner_uid=OWNER).actions)
    return api


def test_missing_children_are_created_and_a_second_pass_does_nothing():
    desired = _desired()
    first = plan(desired, [], owner_uid=OWNER)
    assert _kinds(first.actions) == [("Create", "Deployment"), ("Create", "Service")]
    api = FakeAPIServer()
    api.apply(first.actions)
    assert plan(desired, api.listed(), owner_uid=OWNER).actions == ()


def _mutate(obj: dict, path: str | tuple, value) -> None:
    *parents, last = path.split(".") if isinstance(path, str) else path
    node = obj
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value


CONTAINER = "spec.template.spec.containers"
DRIFTS = [
    # (kind, field path, value someone else wrote, whether the controller puts it back)
    pytest.param("Deployment", f"{CONTAINER}.0.image", "evil:1", True, id="image-changed"),
    pytest.param("Deployment", f"{CONTAINER}.1.env.5.value", "99", True, id="qp-env-changed"),
    pytest.param("Deployment", "spec.replicas", 7, False, id="replicas-are-the-autoscalers"),
    pytest.param("Deployment", "metadata.labels.team", "a", False, id="foreign-label-kept"),
    pytest.param("Deployment", ("metadata", "labels", "serving.knative.dev/revision"), "x",
                 True, id="our-label-changed"),
    pytest.param("Deployment", "spec.progressDeadlineSeconds", 30, True, id="deadline-changed"),
    pytest.param("Deployment", f"{CONTAINER}.1.resources.requests.cpu", "0.025", False,
                 id="same-quantity-other-spelling"),
    pytest.param("Service", "spec.selector", {"app": "other"}, True, id="selector-changed"),
    pytest.param("Service", "spec.ports.0.targetPort", 9999, True, id="port-changed"),
]


@pytest.mark.parametrize(("kind", "path", "value", "restored"), DRIFTS)
def test_drift_is_updated_back_only_where_the_controller_owns_the_field(kind, path, value,
                                                                         restored):
    desired = _desired()
    api = _api_with(desired)
    key = next(k for k in api.objects if k[1] == kind)
    _mutate(api.objects[key], path, value)
    actions = plan(desired, api.listed(), owner_uid=OWNER).actions
    if not restored:
        assert actions == ()
        return
    assert _kinds(actions) == [("Update", kind)]
    update = actions[0].obj
    assert update["metadata"]["resourceVersion"] == api.objects[key]["metadata"]["resourceVersion"]
    if kind == "Deployment":
        assert update["spec"]["replicas"] == api.objects[key]["spec"]["replicas"]
    if kind == "Service":
        assert update["spec"]["clusterIP"] == "None"
    api.apply(actions)
    assert plan(desired, api.listed(), owner_uid=OWNER).actions == ()


def test_update_keeps_replicas_and_fields_others_set():
    desired = _desired()
    api = _api_with(desired)
    key = next(k for k in api.objects if k[1] == "Deployment")
    api.objects[key]["spec"]["replicas"] = 4
    api.objects[key]["metadata"]["labels"]["team"] = "a"
    _mutate(api.objects[key], f"{CONTAINER}.0.image", "evil:1")
    (update,) = plan(desired, api.listed(), owner_uid=OWNER).actions
    assert update.obj["spec"]["replicas"] == 4
    assert update.obj["metadata"]["labels"]["team"] == "a"
    assert update.obj["spec"]["template"]["spec"]["containers"][0]["image"] \
        == "docker.io/{username}/helloworld-python"


def _owned(kind: str, name: str, uid: str, owner: str | None, **meta) -> dict:
    refs = [] if owner is None else [{"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                                      "name": "r", "uid": owner, "controller": True}]
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": "default", "uid": uid,
                         "ownerReferences": refs, **meta}, "spec": {}}


ORPHANS = [
    pytest.param(_owned("Service", "old", "u1", OWNER), True,
                 [Delete("v1", "Service", "default", "old", "u1")], id="ours-deleted"),
    pytest.param(_owned("Service", "old", "u1", "someone-else"), True, [], id="others-kept"),
    pytest.param(_owned("Service", "old", "u1", None), True, [], id="unowned-kept"),
    pytest.param(_owned("Service", "old", "u1", OWNER), False, [], id="no-prune-keeps"),
    pytest.param(_owned("Service", "old", "u1", OWNER, deletionTimestamp="2026-01-01T00:00:00Z"),
                 True, [], id="already-deleting"),
]


@pytest.mark.parametrize(("orphan", "prune", "want"), ORPHANS)
def test_orphans_are_deleted_only_when_ours(orphan, prune, want):
    desired = _desired()
    api = _api_with(desired)
    actions = plan(desired, [*api.listed(), orphan], owner_uid=OWNER, prune=prune).actions
    assert list(actions) == want


def test_name_taken_by_another_owner_is_a_conflict_not_a_takeover():
    desired = _desired()
    squatter = {**copy.deepcopy(desired[0]), "metadata": {
        **desired[0]["metadata"], "uid": "u9", "ownerReferences": []}}
    result = plan(desired, [squatter], owner_uid=OWNER)
    assert _kinds(result.actions) == [("Create", "Service")]
    assert result.conflicts == (Conflict("apps/v1", "Deployment", "default",
                                         "autoscale-python-00001-deployment"),)
    assert result.conflicts[0].reason == "NotOwned"
    assert "autoscale-python-00001-deployment" in result.conflicts[0].message


def test_child_being_deleted_is_left_alone():
    desired = _desired()
    api = _api_with(desired)
    for obj in api.objects.values():
        obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        obj["spec"]["selector"] = {"drifted": "yes"}
    assert plan(desired, api.listed(), owner_uid=OWNER).actions == ()


def test_immutable_children_are_never_updated():
    desired = _desired()
    api = _api_with(desired)
    for obj in api.objects.values():
        obj["spec"]["selector"] = {"drifted": "yes"}
    assert plan(desired, api.listed(), owner_uid=OWNER, immutable=True).actions == ()


@pytest.mark.parametrize(("desired", "observed", "want"), [
    pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="extra-observed-field"),
    pytest.param({"a": ""}, {}, True, id="empty-string-omitted"),
    pytest.param({"a": False}, {}, True, id="false-omitted"),
    pytest.param({"a": 0}, {"a": 0}, True, id="zero-kept"),
    pytest.param({"a": 1}, {}, False, id="missing-field"),
    pytest.param({"a": [1, 2]}, {"a": [1]}, False, id="shorter-list"),
    pytest.param({"a": "8080"}, {"a": 8080}, False, id="string-is-not-int"),
    pytest.param({"a": True}, {"a": 1}, False, id="bool-is-not-int"),
    pytest.param({"resources": {"limits": {"memory": "1Gi"}}},
                 {"resources": {"limits": {"memory": "1024Mi"}}}, True, id="quantity-value"),
    pytest.param({"resources": {"limits": {"memory": "1G"}}},
                 {"resources": {"limits": {"memory": "1Gi"}}}, False, id="quantity-differs"),
])
def test_is_derivative(desired, observed, want):
    assert is_derivative(desired, observed) is want


def test_plan_status_writes_only_a_changed_status():
    obj = {"apiVersion": "serving.knative.dev/v1", "kind": "Route",
           "metadata": {"name": "r", "resourceVersion": "5"}, "status": {"url": "http://a"}}
    assert plan_status(obj, {"url": "http://a"}) is None
    update = plan_status(obj, {"url": "http://b"})
    assert isinstance(update, UpdateStatus)
    assert update.obj["status"] == {"url": "http://b"}
    assert update.obj["metadata"]["resourceVersion"] == "5"
    assert obj["status"] == {"url": "http://a"}
