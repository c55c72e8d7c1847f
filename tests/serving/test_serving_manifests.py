"""serving.manifests: YAML documents to objects, v1alpha1 conversion, shape errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from serving.manifests import parse_manifests, parse_object
from serving.model import ConfigMap, Configuration, Route, Service, TrafficTarget
from serving.validation import ValidationError

# The Knative hello-world Service of the seeds (docs' helloworld-python, runnable locally).
HELLOWORLD = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: helloworld-python
  namespace: default
spec:
  template:
    spec:
      containers:
        - image: docker.io/{username}/helloworld-python
          command: ["python", "app.py"]
          env:
            - name: TARGET
              value: "Python Sample v1"
"""

# The older v1alpha1 runLatest form the seeds also use.
RUN_LATEST = """
apiVersion: serving.knative.dev/v1alpha1
kind: Service
metadata:
  name: helloworld-python
  namespace: default
spec:
  runLatest:
    configuration:
      revisionTemplate:
        spec:
          container:
            image: docker.io/{username}/helloworld-python
            env:
              - name: TARGET
                value: "Python Sample v1"
"""

BLUE_GREEN = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec:
  template:
    metadata: {name: hello-green}
    spec:
      containers: [{image: hello, command: [python, app.py]}]
  traffic:
    - {tag: blue, revisionName: hello-blue, percent: 100}
    - {tag: green, revisionName: hello-green, percent: 0}
"""

CANARY = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec:
  template:
    spec:
      containers: [{image: hello, command: [python, app.py]}]
  traffic:
    - {tag: stable, revisionName: hello-00001, percent: 80}
    - {tag: canary, latestRevision: true, percent: 20}
"""


def test_helloworld_parses_to_one_service_with_its_container():
    parsed = parse_manifests(HELLOWORLD)
    assert parsed.warnings == ()
    (svc,) = parsed.objects
    assert isinstance(svc, Service)
    assert svc.key.namespace == "default" and svc.key.name == "helloworld-python"
    c = svc.template.spec.container
    assert c.command == ("python", "app.py")
    assert c.env_dict() == {"TARGET": "Python Sample v1"}
    assert c.user_port == 8080
    assert svc.traffic == ()


def test_run_latest_converts_to_the_v1_template_with_a_warning():
    parsed = parse_manifests(RUN_LATEST)
    (svc,) = parsed.objects
    (v1,) = parse_manifests(HELLOWORLD).objects
    # The same container as the v1 seed, which also says what to run locally.
    assert svc.template.spec.containers == (replace(v1.template.spec.container, command=()),)
    assert svc.template.name == "" and svc.traffic == ()
    assert any("runLatest" in w and "converted" in w for w in parsed.warnings)
    assert any("deprecated" in w for w in parsed.warnings)


@pytest.mark.parametrize(("text", "traffic"), [
    pytest.param(BLUE_GREEN, (TrafficTarget(tag="blue", revision_name="hello-blue", percent=100),
                              TrafficTarget(tag="green", revision_name="hello-green", percent=0)),
                 id="blue-green-100-0-with-tags"),
    pytest.param(CANARY, (TrafficTarget(tag="stable", revision_name="hello-00001", percent=80),
                          TrafficTarget(tag="canary", latest_revision=True, percent=20)),
                 id="canary-80-20-with-tags"),
])
def test_seed_traffic_blocks_parse_as_written(text, traffic):
    (svc,) = parse_manifests(text).objects
    assert svc.traffic == traffic


def test_many_documents_parse_in_order_and_v1beta1_is_v1():
    text = (HELLOWORLD + "---\n" + """
apiVersion: serving.knative.dev/v1beta1
kind: Configuration
metadata: {name: cfg}
spec:
  template:
    spec:
      containers: [{image: x}]
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: rt, namespace: prod}
spec:
  traffic: [{configurationName: cfg, percent: 100}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-domain, namespace: knative-serving}
data: {example.org: ""}
---
""")
    kinds = [type(o) for o in parse_manifests(text).objects]
    assert kinds == [Service, Configuration, Route, ConfigMap]
    route = parse_manifests(text).objects[2]
    assert route.key.namespace == "prod"
    assert route.traffic == (TrafficTarget(configuration_name="cfg", percent=100),)


REJECTED = [
    pytest.param("a: [", "", "not valid YAML", id="bad-yaml"),
    pytest.param("- 1\n- 2\n", "", "must be a YAML mapping", id="not-a-mapping"),
    pytest.param("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n", "apiVersion",
                 "not supported", id="unsupported-api"),
    pytest.param("apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata: {name: r}\n",
                 "kind", "revisions are made from", id="revision-kind"),
    pytest.param(RUN_LATEST.replace("runLatest:", "release:\n    revisions: [a, b]\n  x:"),
                 "spec.release", "revisionName: helloworld-python-00001, percent: 90",
                 id="v1alpha1-release-shows-v1"),
    pytest.param(RUN_LATEST.replace("runLatest:", "pinned:\n    revisionName: r\n  x:"),
                 "spec.pinned", "traffic: [{revisionName: helloworld-python-00001, percent: 100}]",
                 id="v1alpha1-pinned-shows-v1"),
    pytest.param(RUN_LATEST.replace("runLatest:", "manual: {}\n  x:"), "spec.manual",
                 "a Configuration named helloworld-python", id="v1alpha1-manual-shows-v1"),
    pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-network}\n",
                 "metadata.name", "is not read by Surge", id="other-configmap"),
    pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-domain, "
                 "namespace: default}\n", "metadata.namespace", "knative-serving",
                 id="configmap-wrong-namespace"),
    pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-defaults}\n"
                 "data: {container-concurrency: 10}\n", "data.container-concurrency",
                 "quote it", id="configmap-unquoted-value"),
    pytest.param(HELLOWORLD.replace("value: \"Python Sample v1\"",
                                    "valueFrom: {secretKeyRef: {name: s, key: k}}"),
                 "spec.template.spec.containers[0].env[0].valueFrom", "set value instead",
                 id="env-value-from"),
    pytest.param(HELLOWORLD.replace("env:", "envFrom: [{secretRef: {name: s}}]\n          env:"),
                 "spec.template.spec.containers[0].envFrom", "not supported locally",
                 id="env-from"),
    pytest.param(HELLOWORLD.replace("value: \"Python Sample v1\"", "value: 3"),
                 "spec.template.spec.containers[0].env[0].value", "quote it",
                 id="env-value-not-string"),
    pytest.param(HELLOWORLD.replace("containers:", "containerConcurrency: ten\n      containers:"),
                 "spec.template.spec.containerConcurrency", "expected an integer",
                 id="cc-not-integer"),
    pytest.param(HELLOWORLD.replace("containers:", "bogus: 1\n      containers:"),
                 "spec.template.spec.bogus", "unknown field", id="unknown-field"),
    pytest.param(HELLOWORLD.replace("name: helloworld-python\n", "generateName: hw-\n"),
                 "metadata.generateName", "set metadata.name", id="generate-name"),
    pytest.param(CANARY.replace("percent: 20", "percent: \"20\""), "spec.traffic[1].percent",
                 "expected an integer", id="percent-as-string"),
]


@pytest.mark.parametrize(("text", "path", "reason"), REJECTED)
def test_malformed_documents_name_the_field_and_reason(text, path, reason):
    with pytest.raises(ValidationError) as info:
        parse_manifests(text)
    assert any(p.path == path and reason in p.reason for p in info.value.problems), \
        info.value.problems


def test_every_bad_document_of_a_file_is_reported_at_once():
    bad = HELLOWORLD.replace("value: \"Python Sample v1\"", "value: 3")
    text = bad + "---\n" + CANARY.replace("percent: 20", "percent: x")
    with pytest.raises(ValidationError) as info:
        parse_manifests(text)
    objects = {p.object for p in info.value.problems}
    assert objects == {"Service/helloworld-python", "Service/hello"}
    lines = str(info.value).splitlines()
    assert lines[0].startswith("Service/helloworld-python: spec.template.spec.containers[0]")


def test_ignored_kubernetes_fields_are_dropped_with_a_warning():
    text = HELLOWORLD.replace("env:", "livenessProbe: {httpGet: {path: /}}\n          env:")
    parsed = parse_manifests(text)
    assert any("containers[0].livenessProbe: ignored" in w for w in parsed.warnings)
    assert parsed.objects[0].template.spec.container.env_dict() == {"TARGET": "Python Sample v1"}


def test_round_trip_through_to_knative_gives_the_same_object():
    for text in (HELLOWORLD, BLUE_GREEN, CANARY):
        (svc,) = parse_manifests(text).objects
        again, warnings = parse_object(svc.to_knative())
        assert again == svc and warnings == []
