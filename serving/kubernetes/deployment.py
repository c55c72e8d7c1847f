"""A revision's Deployment, built as Knative's revision reconciler builds it (pure).

`make_deployment(revision, uid, ...)` returns the `apps/v1` Deployment manifest (a plain
dict, ready for the API) that runs a revision: `<rev>-deployment`, its pods holding the
user container and the `queue-proxy` sidecar. Knative's shape, from
pkg/reconciler/revision/resources/deploy.go and queue.go (reference 4):

- User container: named `user-container` unless the manifest names it; one port named
  `user-port` (the container's port, default 8080); env = the user's, then PORT,
  K_REVISION, K_CONFIGURATION, K_SERVICE (the runtime contract; users may not set
  them). Its HTTP/TCP readiness probe is removed and run by the queue-proxy instead
  (SERVING_READINESS_PROBE), so readiness is probed at 50 ms intervals rather than the
  kubelet's 10 s; an exec probe stays with the kubelet. preStop = GET :8022/wait-for-drain
  on the queue-proxy, so the kubelet only stops the user container after the sidecar
  has drained its in-flight requests.
- queue-proxy: Knative's env names (reference 4.2) plus Surge's port variables; its own
  kubelet readiness probe is GET :8012 with `K-Network-Probe: queue`, timed like the
  user's probe. The admin port listens on the pod IP (QUEUE_ADMIN_ADDRESS), because the
  kubelet calls the preStop hook from outside the pod.
- Pod: terminationGracePeriodSeconds = the revision's timeoutSeconds, so a request may
  run its full timeout while the pod drains.
- Deployment: replicas = the initial scale (annotation, else config-autoscaler), then the
  autoscaler owns it; selector on the revision UID; maxUnavailable 0; no old ReplicaSets
  kept (a revision's template never changes).

Worked example: revision hello-00001 of Service hello with the seeds' container and no
port -> Deployment hello-00001-deployment, replicas 1, containers [user-container (PORT
8080), queue-proxy (USER_PORT 8080, QUEUE_SERVING_PORT 8012, CONTAINER_CONCURRENCY 0,
REVISION_TIMEOUT_SECONDS 300)], terminationGracePeriodSeconds 300.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from autoscaler import AutoscalerConfig, resolve_initial_scale
from serving.configmaps import SYSTEM_NAMESPACE, DefaultsConfig, default_revision_spec
from serving.model import Container, Revision, thaw
from serving.validation import FieldProblem, ValidationError

from .names import (
    APP_LABEL,
    GROUP,
    REVISION_LABEL,
    REVISION_UID_LABEL,
    ROUTE_LABEL,
    ROUTES_ANNOTATION,
    ROUTING_STATE_LABEL,
    ROUTING_STATE_MODIFIED_ANNOTATION,
    deployment_name,
    owner_reference,
)
from .podspec import pass_through
from .reconcile import parse_quantity

DEPLOYMENT_CONFIG = "config-deployment"
QUEUE_CONTAINER_NAME = "queue-proxy"
USER_CONTAINER_NAME = "user-container"
USER_PORT_NAME = "user-port"
# Knative's queue-proxy ports (pkg/networking/constants.go), DESIGN.md "Ports".
QUEUE_SERVING_PORT = 8012
QUEUE_ADMIN_PORT = 8022
QUEUE_STATS_PORT = 9090
QUEUE_METRICS_PORT = 9091
# Port names as Knative's queue.go and revision types give them; the private Service
# and EndpointSlices carry the same names, so readers find ports by name.
QUEUE_PORT_NAMES = {QUEUE_SERVING_PORT: "queue-port", QUEUE_ADMIN_PORT: "queue-admin",
                    QUEUE_STATS_PORT: "http-autometric", QUEUE_METRICS_PORT: "http-usermetric"}
DRAIN_PATH = "/wait-for-drain"
PROBE_HEADER = "K-Network-Probe"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
PROGRESS_DEADLINE_ANNOTATION = f"{GROUP}/progress-deadline"
_AUTOSCALING_PREFIX = "autoscaling.knative.dev"
# Routing bookkeeping on a Revision that its children must not copy (Knative's makeLabels).
EXCLUDED_LABELS = frozenset({ROUTE_LABEL, ROUTING_STATE_LABEL})
# The route labeler's bookkeeping changes with traffic; on the pod template it would
# roll the revision's pods each time (Knative excludes them too).
_EXCLUDED_ANNOTATIONS = frozenset({ROUTES_ANNOTATION, ROUTING_STATE_MODIFIED_ANNOTATION})
_LOCALHOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """config-deployment, parsed: the sidecar image, its resources, the progress deadline."""

    queue_sidecar_image: str = "surge-queue-proxy:dev"
    progress_deadline_s: int = 600
    # Knative requests 25m CPU for the sidecar by default and sets no other resource.
    queue_sidecar_cpu_request: str = "25m"
    queue_sidecar_memory_request: str = ""
    queue_sidecar_cpu_limit: str = ""
    queue_sidecar_memory_limit: str = ""


_QUANTITY_KEYS = {
    "queue-sidecar-cpu-request": "queue_sidecar_cpu_request",
    "queue-sidecar-memory-request": "queue_sidecar_memory_request",
    "queue-sidecar-cpu-limit": "queue_sidecar_cpu_limit",
    "queue-sidecar-memory-limit": "queue_sidecar_memory_limit",
}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration ("600s", "10m", "1h30m"); ValueError if it is not one."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION.match(body, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f"{text!r} is not a duration (like 600s, 10m or 1h30m)")
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f"{text!r} is not a duration (like 600s, 10m or 1h30m)")
    return -total if text.startswith("-") else total


def parse_deployment_config(data: Mapping[str, Any]) -> DeploymentConfig:
    """Parse and check config-deployment `data`; ValidationError lists every bad key."""
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    image = data.get("queue-sidecar-image", data.get("queueSidecarImage"))
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            problems.append(FieldProblem("data.queue-sidecar-image",
                                         f"{image!r} must name the queue-proxy image"))
        else:
            values["queue_sidecar_image"] = image.strip()
    deadline = data.get("progress-deadline", data.get("progressDeadline"))
    if deadline is not None:
        try:
            seconds = parse_go_duration(str(deadline))
        except ValueError as exc:
            problems.append(FieldProblem("data.progress-deadline", str(exc)))
        else:
            if seconds <= 0 or seconds != int(seconds):
                problems.append(FieldProblem("data.progress-deadline", (
                    f"{deadline!r} must be a positive whole number of seconds")))
            else:
                values["progress_deadline_s"] = int(seconds)
    for key, name in _QUANTITY_KEYS.items():
        if key in data and data[key] == "":
            values[name] = ""  # explicitly not set
        elif key in data:
            try:
                parse_quantity(str(data[key]))
            except ValueError as exc:
                problems.append(FieldProblem(f"data.{key}", str(exc)))
            else:
                values[name] = str(data[key])
    if problems:
        raise ValidationError(p.within(f"ConfigMap/{DEPLOYMENT_CONFIG}") for p in problems)
    return replace(DeploymentConfig(), **values)


def revision_labels(revision: Revision, uid: str) -> dict[str, str]:
    """The labels of a revision's Deployment and pods (Knative's makeLabels)."""
    labels = {k: v for k, v in revision.to_knative()["metadata"].get("labels", {}).items()
              if k not in EXCLUDED_LABELS}
    labels[REVISION_LABEL] = revision.name
    labels[REVISION_UID_LABEL] = uid
    labels.setdefault(APP_LABEL, revision.name)  # tracing tools group by `app`
    return labels


def _annotations(revision: Revision) -> dict[str, str]:
    # Autoscaling annotations are the autoscaler's business, not the pods'.
    return {k: v for k, v in revision.annotations.items()
            if not k.startswith(_AUTOSCALING_PREFIX) and k not in _EXCLUDED_ANNOTATIONS}


def _progress_deadline(revision: Revision, config: DeploymentConfig) -> int:
    text = revision.annotations.get(PROGRESS_DEADLINE_ANNOTATION)
    if text is not None:
        try:
            seconds = parse_go_duration(text)
        except ValueError:
            seconds = -1.0  # admission's job to reject; the cluster default applies
        if seconds >= 0 and seconds == int(seconds):
            return int(seconds)
    return config.progress_deadline_s


def user_probe(container: Container, user_port: int) -> dict[str, Any]:
    """The user's readiness probe as the queue-proxy runs it (SERVING_READINESS_PROBE).

    Knative's defaults: no probe is a TCP probe of the user port; HTTP/TCP probes target
    127.0.0.1 and the user port unless they name one; an exec probe becomes a TCP probe
    (the exec itself stays with the kubelet); a periodic probe times out after >= 1 s.
    """
    probe = thaw(container.readiness_probe) if container.readiness_probe is not None \
        else {"tcpSocket": {"port": 0}, "successThreshold": 1}
    if "exec" in probe:
        del probe["exec"]
        probe["tcpSocket"] = {}
    for kind in ("httpGet", "tcpSocket"):
        action = probe.get(kind)
        if isinstance(action, dict):
            action["host"] = _LOCALHOST
            if not action.get("port"):
                action["port"] = user_port
            if kind == "httpGet":
                action.setdefault("scheme", "HTTP")
    if probe.get("periodSeconds", 0) > 0 and probe.get("timeoutSeconds", 0) < 1:
        probe["timeoutSeconds"] = 1
    return probe


def _has_probe_for_queue(container: Container) -> bool:
    probe = container.readiness_probe
    return probe is None or any(k in probe for k in ("httpGet", "tcpSocket", "grpc"))


def _user_container(container: Container, revision: Revision) -> dict[str, Any]:
    port = container.user_port
    out = container.to_knative()
    out["ports"] = [{"name": USER_PORT_NAME, "containerPort": port}]
    out["env"] = [*out.get("env", []), {"name": "PORT", "value": str(port)},
                  {"name": "K_REVISION", "value": revision.name},
                  {"name": "K_CONFIGURATION", "value": revision.configuration},
                  {"name": "K_SERVICE", "value": revision.service}]
    if _has_probe_for_queue(container):
        out.pop("readinessProbe", None)  # the queue-proxy probes it (see user_probe)
    out["lifecycle"] = {"preStop": {"httpGet": {"port": QUEUE_ADMIN_PORT, "path": DRAIN_PATH}}}
    out["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return out


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _queue_container(revision: Revision, container: Container,
                     config: DeploymentConfig, system_namespace: str) -> dict[str, Any]:
    spec = revision.spec
    env = [
        {"name": "SERVING_NAMESPACE", "value": revision.namespace},
        {"name": "SERVING_SERVICE", "value": revision.service},
        {"name": "SERVING_CONFIGURATION", "value": revision.configuration},
        {"name": "SERVING_REVISION", "value": revision.name},
        {"name": "QUEUE_SERVING_PORT", "value": str(QUEUE_SERVING_PORT)},
        {"name": "CONTAINER_CONCURRENCY", "value": str(spec.container_concurrency or 0)},
        {"name": "REVISION_TIMEOUT_SECONDS", "value": str(spec.timeout_seconds or 0)},
        # 0 is "off" for both, as in Knative's queue-proxy.
        {"name": "REVISION_RESPONSE_START_TIMEOUT_SECONDS",
         "value": str(spec.response_start_timeout_seconds or 0)},
        {"name": "REVISION_IDLE_TIMEOUT_SECONDS", "value": str(spec.idle_timeout_seconds or 0)},
        _field_env("SERVING_POD", "metadata.name"),
        _field_env("SERVING_POD_IP", "status.podIP"),
        {"name": "SERVING_LOGGING_LEVEL", "value": "info"},
        {"name": "USER_PORT", "value": str(container.user_port)},
        {"name": "SYSTEM_NAMESPACE", "value": system_namespace},
        {"name": "SERVING_READINESS_PROBE",
         "value": json.dumps(user_probe(container, container.user_port), sort_keys=True,
                             separators=(",", ":"))},
        _field_env("HOST_IP", "status.hostIP"),
        {"name": "ENABLE_HTTP2_AUTO_DETECTION", "value": "false"},
        {"name": "ENABLE_HTTP_FULL_DUPLEX", "value": "false"},
        {"name": "ENABLE_MULTI_CONTAINER_PROBES", "value": "false"},
        # Surge's own: the side ports, and the admin port on the pod IP so that the
        # kubelet's preStop GET reaches it.
        {"name": "QUEUE_ADMIN_PORT", "value": str(QUEUE_ADMIN_PORT)},
        {"name": "QUEUE_STATS_PORT", "value": str(QUEUE_STATS_PORT)},
        {"name": "QUEUE_METRICS_PORT", "value": str(QUEUE_METRICS_PORT)},
        _field_env("QUEUE_ADMIN_ADDRESS", "status.podIP"),
    ]
    # The kubelet's probe of the sidecar, timed as the user asked for their container.
    probe: dict[str, Any] = {k: v for k, v in user_probe(container, container.user_port).items()
                             if k not in ("httpGet", "tcpSocket", "exec", "grpc")}
    probe["httpGet"] = {"port": QUEUE_SERVING_PORT,
                        "httpHeaders": [{"name": PROBE_HEADER, "value": "queue"}]}
    requests = {k: v for k, v in (("cpu", config.queue_sidecar_cpu_request),
                                  ("memory", config.queue_sidecar_memory_request)) if v}
    limits = {k: v for k, v in (("cpu", config.queue_sidecar_cpu_limit),
                                ("memory", config.queue_sidecar_memory_limit)) if v}
    resources = {"requests": requests} if requests else {}
    if limits:
        resources["limits"] = limits
    out: dict[str, Any] = {
        "name": QUEUE_CONTAINER_NAME,
        "image": config.queue_sidecar_image,
        "ports": [{"name": name, "containerPort": port} for port, name in QUEUE_PORT_NAMES.items()],
        "env": env,
        "readinessProbe": probe,
        # Knative's: the sidecar needs no privilege and writes nothing to its image.
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if resources:
        out["resources"] = resources
    return out


def make_deployment(revision: Revision, uid: str, *,
                    deployment: DeploymentConfig = DeploymentConfig(),
                    autoscaler: AutoscalerConfig = AutoscalerConfig(),
                    defaults: DefaultsConfig = DefaultsConfig(),
                    system_namespace: str = SYSTEM_NAMESPACE,
                    spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Deployment that runs `revision` (whose Kubernetes object has UID `uid`).

    `spec` is the stored Revision's spec: its Kubernetes-only fields (volumes, envFrom,
    a service account, ...; podspec.py) go into the pod template as written.
    """
    revision = replace(revision, spec=default_revision_spec(revision.spec, defaults))
    container = revision.spec.container
    labels = revision_labels(revision, uid)
    annotations = _annotations(revision)
    pod_annotations = {**annotations, DEFAULT_CONTAINER_ANNOTATION: container.name}
    pod_spec = {
        "containers": [_user_container(container, revision),
                       _queue_container(revision, container, deployment, system_namespace)],
        "terminationGracePeriodSeconds": revision.spec.timeout_seconds,
        # config-defaults enable-service-links defaults to false in Knative: thousands of
        # Services in a namespace would otherwise fill every pod's environment.
        "enableServiceLinks": False,
    }
    if spec is not None:
        pass_through(pod_spec, spec)
    metadata: dict[str, Any] = {
        "name": deployment_name(revision.name), "namespace": revision.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(f"{GROUP}/v1", "Revision", revision.name, uid)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": resolve_initial_scale(autoscaler, revision.annotations),
            "selector": {"matchLabels": {REVISION_UID_LABEL: uid}},
            "progressDeadlineSeconds": _progress_deadline(revision, deployment),
            "revisionHistoryLimit": 0,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }
