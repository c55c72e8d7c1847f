"""A revision's Deployment: the seeds' services, the sidecar, probes, config-deployment."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from k8s_world import children_of, stored

from autoscaler import AutoscalerConfig
from queue_proxy.config import parse_queue_proxy_config
from serving.kubernetes import (
    DeploymentConfig,
    make_deployment,
    make_revision,
    parse_deployment_config,
    revision_model,
)
from serving.validation import ValidationError


def _deployment_of(path: str, **kwargs) -> dict:
    *_, revision = children_of(path)
    return make_deployment(revision_model(revision), "rev-uid", **kwargs)


def _containers(d: dict) -> dict[str, dict]:
    return {c["name"]: c for c in d["spec"]["template"]["spec"]["containers"]}


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# (seed, revision, replicas, containerConcurrency, user env) - the fields a wrong
# builder would most likely get wrong.
SEEDS = [
    pytest.param("basic/service.yaml", "helloworld-python-00001", 1, "0",
                 {"TARGET": "Python Sample v1"}, id="basic"),
    pytest.param("autoscaling/service.yaml", "autoscale-python-00001", 1, "10",
                 {"TARGET": "autoscaling"}, id="autoscaling"),
    pytest.param("blue-green/1-blue.yaml", "blue-green-demo-blue", 1, "0",
                 {"TARGET": "blue"}, id="blue-green-byo-name"),
    pytest.param("canary/2-canary.yaml", "hello-00001", 1, "0", {"TARGET": "canary"},
                 id="canary"),
    pytest.param("scale-to-zero/service.yaml", "hello-zero-00001", 1, "0",
                 {"TARGET": "scale to zero"}, id="scale-to-zero"),
]


@pytest.mark.parametrize(("path", "rev", "replicas", "cc", "user_env"), SEEDS)
def test_seed_deployment_golden_fields(path, rev, replicas, cc, user_env):
    d = _deployment_of(path)
    meta = d["metadata"]
    assert (meta["name"], meta["namespace"]) == (f"{rev}-deployment", "default")
    assert meta["ownerReferences"] == [{
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision", "name": rev,
        "uid": "rev-uid", "controller": True, "blockOwnerDeletion": True}]
    labels = meta["labels"]
    assert labels["serving.knative.dev/revision"] == rev
    assert labels["serving.knative.dev/revisionUID"] == "rev-uid"
    assert labels["serving.knative.dev/configuration"] == labels["serving.knative.dev/service"]
    assert rev.startswith(labels["serving.knative.dev/service"] + "-")
    spec = d["spec"]
    assert spec["replicas"] == replicas
    assert spec["selector"] == {"matchLabels": {"serving.knative.dev/revisionUID": "rev-uid"}}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["progressDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 300
    assert [c["name"] for c in pod["containers"]] == ["user-container", "queue-proxy"]
    user, queue = pod["containers"]
    assert user["image"] == "docker.io/{username}/helloworld-python"
    assert user["ports"] == [{"name": "user-port", "containerPort": 8080}]
    assert _env(user) == {**user_env, "PORT": "8080", "K_REVISION": rev,
                          "K_CONFIGURATION": labels["serving.knative.dev/configuration"],
                          "K_SERVICE": labels["serving.knative.dev/service"]}
    assert user["lifecycle"] == {"preStop": {"httpGet": {"port": 8022,
                                                         "path": "/wait-for-drain"}}}
    assert "readinessProbe" not in user
    assert queue["image"] == "surge-queue-proxy:dev"
    assert {p["containerPort"]: p["name"] for p in queue["ports"]} == {
        8012: "queue-port", 8022: "queue-admin", 9090: "http-autometric",
        9091: "http-usermetric"}
    env = _env(queue)
    assert (env["CONTAINER_CONCURRENCY"], env["USER_PORT"], env["QUEUE_SERVING_PORT"],
            env["REVISION_TIMEOUT_SECONDS"], env["SERVING_REVISION"]) == (cc, "8080", "8012",
                                                                         "300", rev)
    assert queue["readinessProbe"]["httpGet"] == {
        "port": 8012, "httpHeaders": [{"name": "K-Network-Probe", "value": "queue"}]}


def test_autoscaling_annotations_stay_off_the_deployment_and_pods():
    d = _deployment_of("autoscaling/service.yaml")
    assert "annotations" not in d["metadata"]
    assert d["spec"]["template"]["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/default-container": "user-container"}


def test_queue_proxy_env_is_a_valid_queue_proxy_config():
    # The sidecar must start from exactly this environment once the kubelet has
    # resolved the downward-API fields.
    queue = _containers(_deployment_of("autoscaling/service.yaml"))["queue-proxy"]
    downward = {"metadata.name": "autoscale-python-00001-deployment-abc12",
                "status.podIP": "10.0.0.7", "status.hostIP": "192.168.1.2"}
    environ = {e["name"]: e["value"] if "value" in e
               else downward[e["valueFrom"]["fieldRef"]["fieldPath"]] for e in queue["env"]}
    cfg = parse_queue_proxy_config(environ)
    assert (cfg.container_concurrency, cfg.queue_serving_port, cfg.user_port) == (10, 8012, 8080)
    assert (cfg.serving_service, cfg.serving_configuration, cfg.serving_revision) == (
        "autoscale-python", "autoscale-python", "autoscale-python-00001")
    assert (cfg.queue_admin_address, cfg.serving_pod_ip) == ("10.0.0.7", "10.0.0.7")
    assert (cfg.queue_admin_port, cfg.queue_stats_port, cfg.queue_metrics_port) == (
        8022, 9090, 9091)
    assert cfg.revision_timeout_s == 300 and cfg.revision_idle_timeout_s is None
    assert [(p.kind, p.port, p.host) for p in cfg.readiness_probes] == [("tcp", 8080, "127.0.0.1")]


def _revision_with(container: dict | None = None, annotations: dict | None = None, **spec):
    configuration = stored({
        "apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
        "metadata": {"name": "p"},
        "spec": {"template": {"metadata": {"annotations": annotations or {}},
                              "spec": {"containers": [{"image": "img", **(container or {})}],
                                       **spec}}}}, "cfg-uid")
    return revision_model(stored(make_revision(configuration), "rev-uid"))


PROBES = [
    # (user readinessProbe, SERVING_READINESS_PROBE, queue-proxy kubelet probe timings,
    #  whether the user container keeps its probe)
    pytest.param(None, {"tcpSocket": {"host": "127.0.0.1", "port": 8080}, "successThreshold": 1},
                 {"successThreshold": 1}, False, id="none-is-tcp-on-user-port"),
    pytest.param({"httpGet": {"path": "/healthz"}, "periodSeconds": 5},
                 {"httpGet": {"path": "/healthz", "host": "127.0.0.1", "port": 8080,
                              "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1},
                 {"periodSeconds": 5, "timeoutSeconds": 1}, False,
                 id="http-defaults-host-port-scheme-timeout"),
    pytest.param({"tcpSocket": {"port": 8080}, "failureThreshold": 7},
                 {"tcpSocket": {"host": "127.0.0.1", "port": 8080}, "failureThreshold": 7},
                 {"failureThreshold": 7}, False, id="tcp-keeps-thresholds"),
    pytest.param({"exec": {"command": ["ready"]}, "periodSeconds": 2},
                 {"tcpSocket": {"host": "127.0.0.1", "port": 8080}, "periodSeconds": 2,
                  "timeoutSeconds": 1},
                 {"periodSeconds": 2, "timeoutSeconds": 1}, True,
                 id="exec-stays-with-kubelet-queue-uses-tcp"),
]


@pytest.mark.parametrize(("probe", "serving_probe", "timings", "user_keeps"), PROBES)
def test_readiness_probe_moves_to_the_queue_proxy(probe, serving_probe, timings, user_keeps):
    container = {} if probe is None else {"readinessProbe": probe}
    d = make_deployment(_revision_with(container), "rev-uid")
    containers = _containers(d)
    queue = containers["queue-proxy"]
    assert json.loads(_env(queue)["SERVING_READINESS_PROBE"]) == serving_probe
    kubelet = dict(queue["readinessProbe"])
    assert kubelet.pop("httpGet")["port"] == 8012
    assert kubelet == timings
    assert ("readinessProbe" in containers["user-container"]) is user_keeps


@pytest.mark.parametrize(("container", "annotations", "spec", "check"), [
    pytest.param({"ports": [{"containerPort": 9000}], "name": "app"}, {}, {},
                 lambda c, d: (_env(c["app"])["PORT"], _env(c["queue-proxy"])["USER_PORT"],
                               c["app"]["ports"]) == ("9000", "9000",
                                                      [{"name": "user-port",
                                                        "containerPort": 9000}]),
                 id="named-container-custom-port"),
    pytest.param({}, {}, {"timeoutSeconds": 60, "idleTimeoutSeconds": 10},
                 lambda c, d: (d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                               _env(c["queue-proxy"])["REVISION_TIMEOUT_SECONDS"],
                               _env(c["queue-proxy"])["REVISION_IDLE_TIMEOUT_SECONDS"])
                 == (60, "60", "10"), id="timeout-is-grace-period"),
    pytest.param({}, {"autoscaling.knative.dev/initial-scale": "3"}, {},
                 lambda c, d: d["spec"]["replicas"] == 3, id="initial-scale-annotation"),
    pytest.param({}, {"autoscaling.knative.dev/initial-scale": "0"}, {},
                 lambda c, d: d["spec"]["replicas"] == 1, id="initial-scale-0-not-allowed"),
    pytest.param({}, {"serving.knative.dev/progress-deadline": "90s", "team": "a"}, {},
                 lambda c, d: (d["spec"]["progressDeadlineSeconds"],
                               d["metadata"]["annotations"]["team"]) == (90, "a"),
                 id="progress-deadline-annotation-and-user-annotation-kept"),
])
def test_revision_fields_shape_the_deployment(container, annotations, spec, check):
    d = make_deployment(_revision_with(container, annotations, **spec), "rev-uid")
    assert check(_containers(d), d)


def test_configs_shape_replicas_image_and_deadline():
    rev = _revision_with(annotations={"autoscaling.knative.dev/initial-scale": "0"})
    d = make_deployment(
        rev, "rev-uid",
        autoscaler=replace(AutoscalerConfig(), allow_zero_initial_scale=True),
        deployment=DeploymentConfig(queue_sidecar_image="registry/qp:1", progress_deadline_s=120,
                                    queue_sidecar_memory_limit="200Mi"))
    queue = _containers(d)["queue-proxy"]
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["progressDeadlineSeconds"] == 120
    assert queue["image"] == "registry/qp:1"
    assert queue["resources"] == {"requests": {"cpu": "25m"}, "limits": {"memory": "200Mi"}}


CONFIG_DEPLOYMENT = [
    pytest.param({}, DeploymentConfig(), None, id="empty-is-defaults"),
    pytest.param({"queue-sidecar-image": "r/qp:2", "progress-deadline": "10m"},
                 DeploymentConfig(queue_sidecar_image="r/qp:2", progress_deadline_s=600), None,
                 id="image-and-minutes"),
    pytest.param({"queueSidecarImage": "old/qp"}, DeploymentConfig(queue_sidecar_image="old/qp"),
                 None, id="legacy-camel-case-key"),
    pytest.param({"progress-deadline": "1h30m"}, DeploymentConfig(progress_deadline_s=5400), None,
                 id="compound-duration"),
    pytest.param({"queue-sidecar-image": ""}, None, "data.queue-sidecar-image", id="empty-image"),
    pytest.param({"progress-deadline": "0s"}, None, "data.progress-deadline", id="zero-deadline"),
    pytest.param({"progress-deadline": "1.5s"}, None, "data.progress-deadline",
                 id="fractional-deadline"),
    pytest.param({"progress-deadline": "600"}, None, "data.progress-deadline",
                 id="deadline-without-unit"),
    pytest.param({"queue-sidecar-cpu-request": "lots"}, None, "data.queue-sidecar-cpu-request",
                 id="bad-quantity"),
]


@pytest.mark.parametrize(("data", "want", "bad_path"), CONFIG_DEPLOYMENT)
def test_parse_config_deployment(data, want, bad_path):
    if want is not None:
        assert parse_deployment_config(data) == want
        return
    with pytest.raises(ValidationError) as err:
        parse_deployment_config(data)
    assert [p.path for p in err.value.problems] == [bad_path]
    assert err.value.problems[0].object == "ConfigMap/config-deployment"
