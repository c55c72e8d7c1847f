"""The Kubernetes-only pod fields: hidden from the model, checked, copied to the Deployment."""

from __future__ import annotations

import copy

import pytest

from serving.kubernetes import make_deployment, revision_model
from serving.kubernetes.podspec import model_view, pass_through, problems
from serving.validation import ValidationError

SECRET_ENV = {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
RICH_SPEC = {
    "serviceAccountName": "reader",
    "imagePullSecrets": [{"name": "regcred"}],
    "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
    "nodeSelector": {"disk": "ssd"},
    "containers": [{
        "image": "example/hello",
        "envFrom": [{"secretRef": {"name": "db"}}],
        "env": [{"name": "A", "value": "1"}, SECRET_ENV, {"name": "B", "value": "$(A)-2"}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "startupProbe": {"tcpSocket": {"port": 8080}},
        "securityContext": {"runAsNonRoot": True},
        "imagePullPolicy": "Always",
    }],
    "timeoutSeconds": 300,
}

VIEW_CASES = [
    pytest.param({"containers": [{"image": "x", "env": [SECRET_ENV]}]},
                 {"containers": [{"image": "x", "env": []}]}, id="sourced-env-hidden"),
    pytest.param({"containers": [{"image": "x", "envFrom": [{"secretRef": {"name": "s"}}]}]},
                 {"containers": [{"image": "x"}]}, id="envFrom-hidden"),
    pytest.param({"volumes": [], "serviceAccountName": "sa", "containers": [{"image": "x"}],
                  "timeoutSeconds": 5},
                 {"containers": [{"image": "x"}], "timeoutSeconds": 5}, id="pod-fields-hidden"),
    pytest.param({"containers": [{"image": "x", "env": [{"name": "A", "value": "1"}]}]},
                 {"containers": [{"image": "x", "env": [{"name": "A", "value": "1"}]}]},
                 id="plain-env-kept"),
    pytest.param({"containers": ["not a mapping"]}, {"containers": ["not a mapping"]},
                 id="malformed-left-for-the-model"),
    pytest.param({"hostNetwork": True, "containers": [{"image": "x"}]},
                 {"hostNetwork": True, "containers": [{"image": "x"}]},
                 id="host-network-not-passed-through"),
]


@pytest.mark.parametrize(("spec", "want"), VIEW_CASES)
def test_model_view_hides_only_what_kubernetes_honours(spec, want):
    before = copy.deepcopy(spec)
    assert model_view(spec) == want
    assert spec == before  # a copy: the stored object is not touched


PROBLEM_CASES = [
    pytest.param([SECRET_ENV], [], id="one-source"),
    pytest.param([{"name": "X", "valueFrom": {}}],
                 [("spec.containers[0].env[0].valueFrom", "exactly one of")], id="no-source"),
    pytest.param([{"name": "X", "valueFrom": {"secretKeyRef": {}, "fieldRef": {}}}],
                 [("spec.containers[0].env[0].valueFrom", "exactly one of")], id="two-sources"),
    pytest.param([{"name": "PORT", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 [("spec.containers[0].env[0].name", "runtime contract")], id="reserved-name"),
    pytest.param([{"name": "A", "value": "1"}], [], id="plain-value-is-the-models"),
]


@pytest.mark.parametrize(("env", "want"), PROBLEM_CASES)
def test_problems_name_the_field_and_reason(env, want):
    got = [(p.path, p.reason) for p in problems({"containers": [{"image": "x", "env": env}]})]
    assert len(got) == len(want), got
    for (path, reason), (want_path, fragment) in zip(got, want):
        assert path == want_path and fragment in reason, (path, reason)


def test_pass_through_copies_fields_and_keeps_the_users_env_order():
    pod = {"containers": [{"name": "user-container", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-2"},
        {"name": "PORT", "value": "8080"}, {"name": "K_REVISION", "value": "r"}]},
        {"name": "queue-proxy"}], "enableServiceLinks": False}
    pass_through(pod, RICH_SPEC)
    user = pod["containers"][0]
    assert [e["name"] for e in user["env"]] == ["A", "PW", "B", "PORT", "K_REVISION"]
    assert user["envFrom"] == [{"secretRef": {"name": "db"}}]
    assert user["volumeMounts"][0]["mountPath"] == "/etc/cfg"
    assert user["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert user["imagePullPolicy"] == "Always"
    assert pod["volumes"] == RICH_SPEC["volumes"]
    assert pod["serviceAccountName"] == "reader"
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["enableServiceLinks"] is False  # Knative's default stays unless written
    assert pod["containers"][1] == {"name": "queue-proxy"}  # the sidecar is Surge's own


def revision(spec: dict) -> dict:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "metadata": {"name": "hello-00001", "namespace": "default", "uid": "u1",
                         "labels": {"serving.knative.dev/configuration": "hello",
                                    "serving.knative.dev/service": "hello"}},
            "spec": spec}


def test_a_revision_with_secrets_and_volumes_gets_them_on_its_deployment():
    rev = revision(copy.deepcopy(RICH_SPEC))
    dep = make_deployment(revision_model(rev), "u1", spec=rev["spec"])
    pod = dep["spec"]["template"]["spec"]
    user = pod["containers"][0]
    assert user["name"] == "user-container"
    assert {"secretRef": {"name": "db"}} in user["envFrom"]
    assert SECRET_ENV in user["env"]
    assert [e["name"] for e in user["env"]][-4:] == ["PORT", "K_REVISION", "K_CONFIGURATION",
                                                    "K_SERVICE"]
    assert pod["volumes"] == RICH_SPEC["volumes"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    # The queue-proxy still runs the user's readiness checks; the preStop drain stays.
    assert user["lifecycle"]["preStop"]["httpGet"]["path"] == "/wait-for-drain"


def test_a_bad_value_source_is_a_validation_error_at_its_path():
    spec = {"containers": [{"image": "x", "env": [{"name": "X", "valueFrom": {}}]}]}
    with pytest.raises(ValidationError) as err:
        revision_model(revision(spec))
    assert [p.path for p in err.value.problems] == ["spec.containers[0].env[0].valueFrom"]
