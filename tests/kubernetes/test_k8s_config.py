"""config/: every manifest parses, the CRDs accept the seeds, the ConfigMaps are the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from k8s_schema import structural_problems, validate

from autoscaler import AutoscalerConfig
from serving.configmaps import (
    DefaultsConfig,
    DomainConfig,
    parse_autoscaler_configmap,
    parse_defaults_config,
    parse_domain_config,
)
from serving.kubernetes import DeploymentConfig, parse_deployment_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
SEEDS = sorted((ROOT / "examples").rglob("*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


ALL = [d for p in sorted(CONFIG.glob("*.yaml")) for d in _docs(p)]
CRDS = {d["spec"]["names"]["kind"]: d for d in ALL if d["kind"] == "CustomResourceDefinition"}
CONFIGMAPS = {d["metadata"]["name"]: d for d in ALL if d["kind"] == "ConfigMap"}
SEED_SERVICES = [pytest.param(d, id=f"{p.parent.name}/{p.name}") for p in SEEDS
                 for d in _docs(p) if d.get("kind") == "Service"]


def _schema(kind: str) -> dict:
    (version,) = CRDS[kind]["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_parses_with_kind_and_name(path):
    docs = _docs(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def test_files_apply_in_dependency_order():
    # kubectl apply -f config/ goes file by file in name order: the namespace first,
    # then what lives in it.
    names = sorted(p.name for p in CONFIG.glob("*.yaml"))
    first = _docs(CONFIG / names[0])
    assert [d["kind"] for d in first] == ["Namespace"]
    assert first[0]["metadata"]["name"] == "knative-serving"
    namespaced = [d for p in names[1:] for d in _docs(CONFIG / p)
                  if d["kind"] not in ("CustomResourceDefinition", "ClusterRole",
                                       "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"knative-serving"}


@pytest.mark.parametrize(("kind", "short", "columns"), [
    pytest.param("Service", ["kservice", "ksvc"],
                 ["URL", "LatestCreated", "LatestReady", "Ready", "Reason"], id="ksvc"),
    pytest.param("Configuration", ["config", "cfg"],
                 ["LatestCreated", "LatestReady", "Ready", "Reason"], id="config"),
    pytest.param("Revision", ["rev"], ["Config Name", "Generation", "Ready", "Reason",
                                       "Actual Replicas", "Desired Replicas"], id="rev"),
    pytest.param("Route", ["rt"], ["URL", "Ready", "Reason"], id="route"),
])
def test_crd_names_columns_and_status_subresource(kind, short, columns):
    crd = CRDS[kind]
    assert crd["spec"]["group"] == "serving.knative.dev"
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.serving.knative.dev"
    assert crd["spec"]["names"]["shortNames"] == short
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
    assert structural_problems(version["schema"]["openAPIV3Schema"]) == []


@pytest.mark.parametrize("service", SEED_SERVICES)
def test_service_crd_accepts_every_seed(service):
    assert validate(_schema("Service"), service) == []


@pytest.mark.parametrize("service", SEED_SERVICES)
def test_configuration_and_revision_crds_accept_the_seeds_templates(service):
    template = service["spec"]["template"]
    configuration = {"apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
                     "metadata": {"name": "c"}, "spec": {"template": template}}
    revision = {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                "metadata": {"name": "c-00001"}, "spec": template["spec"]}
    assert validate(_schema("Configuration"), configuration) == []
    assert validate(_schema("Revision"), revision) == []


def _service(**spec_changes) -> dict:
    template = {"spec": {"containers": [{"image": "img"}]}}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "s"}, "spec": {"template": template, **spec_changes}}


BAD_SERVICES = [
    pytest.param(_service(traffic=[{"percent": "80"}]), "spec.traffic[0].percent",
                 id="percent-as-string"),
    pytest.param(_service(traffic=[{"percent": 101, "latestRevision": True}]),
                 "spec.traffic[0].percent", id="percent-above-100"),
    pytest.param(_service(traffic=[{"percnt": 100}]), "spec.traffic[0].percnt",
                 id="misspelt-traffic-field"),
    pytest.param(_service(templat={}), "spec.templat", id="misspelt-spec-field"),
    pytest.param({**_service(), "spec": {"template": {"spec": {"containerConcurrency": -1,
                                                                "containers": []}}}},
                 "spec.template.spec.containerConcurrency", id="negative-concurrency"),
    pytest.param({**_service(), "spec": {"template": {"spec": {}}}},
                 "spec.template.spec.containers", id="no-containers"),
    pytest.param({**_service(), "spec": {"template": {"spec": {"containers": [
        {"image": "i", "env": [{"value": "v"}]}]}}}},
                 "spec.template.spec.containers[0].env[0].name", id="env-without-name"),
]


@pytest.mark.parametrize(("service", "path"), BAD_SERVICES)
def test_service_crd_refuses_bad_fields_naming_them(service, path):
    problems = validate(_schema("Service"), service)
    assert problems and all(p.startswith(path) for p in problems), problems


def test_crd_keeps_pod_fields_surge_does_not_type():
    # Knative passes the rest of a PodSpec through; so do our CRDs.
    service = _service()
    container = service["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "v", "mountPath": "/v"}]
    container["env"] = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    service["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    assert validate(_schema("Service"), service) == []


def _data(name: str) -> dict:
    return CONFIGMAPS[name]["data"]


def _example(name: str) -> dict:
    return yaml.safe_load(_data(name)["_example"])


@pytest.mark.parametrize(("name", "parse", "default"), [
    pytest.param("config-autoscaler", parse_autoscaler_configmap, AutoscalerConfig(),
                 id="autoscaler"),
    pytest.param("config-defaults", parse_defaults_config, DefaultsConfig(), id="defaults"),
    pytest.param("config-deployment", parse_deployment_config, DeploymentConfig(),
                 id="deployment"),
])
def test_shipped_configmap_and_its_example_parse_to_the_defaults(name, parse, default):
    assert CONFIGMAPS[name]["metadata"]["namespace"] == "knative-serving"
    assert parse(_data(name)) == default
    # The documented values in `_example` are the defaults too (Knative's config tests).
    assert parse(_example(name)) == default


def test_shipped_config_domain_is_example_com():
    assert parse_domain_config(_data("config-domain")) == DomainConfig()
    assert DomainConfig().lookup({}) == "example.com"
    example = parse_domain_config(_example("config-domain"))
    assert example.lookup({"app": "nonprofit"}) == "example.org"
    assert example.lookup({}) == "example.com"


def test_config_deployment_names_the_surge_sidecar_image():
    assert _data("config-deployment")["queue-sidecar-image"] == "surge-queue-proxy:dev"


def _by(kind: str, name: str) -> dict:
    return next(d for d in ALL if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize(("component", "command", "ports"), [
    pytest.param("controller", ["surge", "controller"], {"http-metrics": 9090}, id="controller"),
    pytest.param("autoscaler", ["surge", "autoscaler"],
                 {"websocket": 8080, "http-metrics": 9090}, id="autoscaler"),
    pytest.param("activator", ["surge", "activator"], {"http": 8080, "http-metrics": 9090},
                 id="activator"),
])
def test_components_run_surge_image_as_their_service_account(component, command, ports):
    deployment = _by("Deployment", component)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (container["image"], container["command"]) == ("surge:dev", command)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == ports
    assert pod["serviceAccountName"] == component
    assert _by("ServiceAccount", component)["metadata"]["namespace"] == "knative-serving"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_activator_service_is_the_exposed_ingress_and_only_http():
    svc = _by("Service", "activator-service")
    assert svc["spec"]["type"] in ("LoadBalancer", "NodePort")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def _rules(role: str) -> set[tuple[str, str, str]]:
    doc = next(d for d in ALL if d["kind"] in ("ClusterRole", "Role")
               and d["metadata"]["name"] == role)
    return {(g, r, v) for rule in doc["rules"] for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize(("role", "needed", "forbidden"), [
    pytest.param("surge-controller",
                 {("serving.knative.dev", "revisions", "create"),
                  ("serving.knative.dev", "services/status", "update"),
                  ("apps", "deployments", "create"), ("", "services", "create")},
                 {("serving.knative.dev", "services", "delete"),
                  ("apps", "deployments/scale", "patch"), ("", "secrets", "get")},
                 id="controller"),
    pytest.param("surge-autoscaler",
                 {("apps", "deployments/scale", "patch"),
                  ("discovery.k8s.io", "endpointslices", "watch"), ("", "services", "patch")},
                 {("apps", "deployments", "update"), ("serving.knative.dev", "revisions",
                                                      "update"), ("", "services", "delete")},
                 id="autoscaler"),
    pytest.param("surge-activator",
                 {("serving.knative.dev", "routes", "watch"),
                  ("discovery.k8s.io", "endpointslices", "watch"), ("", "services", "watch")},
                 {("serving.knative.dev", "routes", "update"), ("", "events", "create"),
                  ("", "services", "patch")},
                 id="activator"),
])
def test_rbac_grants_what_each_component_uses_and_no_more(role, needed, forbidden):
    rules = _rules(role)
    assert needed <= rules
    assert not forbidden & rules
    assert not any("*" in rule for rule in rules)
