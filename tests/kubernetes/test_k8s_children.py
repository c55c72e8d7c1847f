"""A Service's Configuration and Route, a Configuration's Revision, from the seeds."""

from __future__ import annotations

import pytest
from k8s_world import children_of, seed, stored

from serving.kubernetes import (
    make_configuration,
    make_revision,
    make_route,
    revision_problem,
    service_traffic,
)
from serving.validation import ValidationError

TRAFFIC = [
    pytest.param("basic/service.yaml",
                 [{"configurationName": "helloworld-python", "latestRevision": True,
                   "percent": 100}], id="none-is-100-latest"),
    pytest.param("canary/2-canary.yaml",
                 [{"tag": "current", "revisionName": "hello-00001", "percent": 80,
                   "latestRevision": False},
                  {"tag": "candidate", "latestRevision": True, "percent": 20,
                   "configurationName": "hello"}], id="canary-80-20"),
    pytest.param("blue-green/2-green.yaml",
                 [{"tag": "blue", "revisionName": "blue-green-demo-blue", "percent": 100,
                   "latestRevision": False},
                  {"tag": "green", "revisionName": "blue-green-demo-green", "percent": 0,
                   "latestRevision": False}], id="blue-green-pinned"),
]


@pytest.mark.parametrize(("path", "want"), TRAFFIC)
def test_route_traffic_gets_knatives_defaults(path, want):
    assert service_traffic(stored(seed(path), "s")) == want


def test_service_children_are_owned_and_labelled():
    service = stored(seed("canary/2-canary.yaml"), "svc-uid")
    service["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}
    for child in (make_configuration(service), make_route(service)):
        meta = child["metadata"]
        assert (meta["name"], meta["namespace"]) == ("hello", "default")
        assert meta["labels"] == {"serving.knative.dev/service": "hello",
                                  "serving.knative.dev/serviceUID": "svc-uid"}
        assert meta["annotations"] == {"team": "a"}
        assert meta["ownerReferences"] == [{
            "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello",
            "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}]
    assert make_configuration(service)["spec"]["template"] == service["spec"]["template"]


@pytest.mark.parametrize(("path", "generation", "name"), [
    pytest.param("basic/service.yaml", 1, "helloworld-python-00001", id="first"),
    pytest.param("update/v2.yaml", 2, "helloworld-python-00002", id="second-generation"),
    pytest.param("blue-green/2-green.yaml", 2, "blue-green-demo-green", id="byo-name"),
])
def test_revision_named_labelled_and_defaulted(path, generation, name):
    _, configuration, _, revision = children_of(path, generation=generation)
    meta = revision["metadata"]
    assert meta["name"] == name
    service = configuration["metadata"]["name"]
    assert meta["labels"] == {"serving.knative.dev/configuration": service,
                              "serving.knative.dev/configurationGeneration": str(generation),
                              "serving.knative.dev/configurationUID": "cfg-uid",
                              "serving.knative.dev/service": service,
                              "serving.knative.dev/serviceUID": "svc-uid",
                              "serving.knative.dev/routingState": "pending"}
    assert meta["ownerReferences"][0]["kind"] == "Configuration"
    spec = revision["spec"]
    assert (spec["timeoutSeconds"], spec["containerConcurrency"]) == (300, 0)
    assert spec["containers"][0]["name"] == "user-container"
    assert spec["containers"][0]["env"] == seed(path)["spec"]["template"]["spec"]["containers"][0]["env"]


def test_revision_keeps_annotations_and_fields_surge_does_not_model():
    _, configuration, _, _ = children_of("autoscaling/service.yaml")
    configuration["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    revision = make_revision(configuration)
    assert revision["metadata"]["annotations"]["autoscaling.knative.dev/target"] == "10"
    assert revision["spec"]["containerConcurrency"] == 10
    assert revision["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_unreadable_template_is_a_validation_error_naming_the_field():
    _, configuration, _, _ = children_of("basic/service.yaml")
    configuration["spec"]["template"]["spec"]["timeoutSeconds"] = "soon"
    with pytest.raises(ValidationError) as err:
        make_revision(configuration)
    assert [p.path for p in err.value.problems] == ["spec.template.spec.timeoutSeconds"]


def test_byo_revision_name_reused_for_a_changed_template_is_a_problem():
    _, green, _, green_revision = children_of("blue-green/2-green.yaml", generation=2)
    assert revision_problem(green, green_revision) is None  # defaults are no difference
    green["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "teal"
    problem = revision_problem(green, green_revision)
    assert problem is not None and "blue-green-demo-green" in problem and "immutable" in problem
