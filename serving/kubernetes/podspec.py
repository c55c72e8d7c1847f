"""The Kubernetes fields of a revision's pod spec that Surge's model does not keep (pure).

Surge's serving model (serving/model.py) holds what a local pod can honour: command,
env values, ports, the readiness probe, resources. On Kubernetes the kubelet honours
much more, and Knative lets users write it: Secrets and ConfigMaps in the environment
(`envFrom`, `env[].valueFrom`), volumes and their mounts, liveness and startup probes,
a service account, pull secrets, a security context, scheduling constraints. Those
fields are read here, straight from the stored Revision, and copied into the
Deployment's pod template beside what the model builds; the model validates the rest.

- `model_view(spec)`: the spec as the model may read it: without `envFrom`, without
  env entries that take their value from elsewhere (their names are still checked for
  the runtime contract here), and without the pass-through fields (the model would
  only warn about them and drop them).
- `problems(spec)`: what is wrong with those fields that the API server's Deployment
  validation would otherwise report only as a failed write (a `valueFrom` naming no
  source or two, a reserved name taken from elsewhere).
- `pass_through(pod_spec, spec)`: adds the fields to a built pod spec; the user's env
  list replaces the model's, in the user's order (`$(VAR)` references depend on it),
  and the runtime contract's variables follow it.

Worked example: containers[0] has envFrom [{secretRef: {name: db}}] and env
[{name: A, value: "1"}, {name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}],
and the spec has volumes [{name: cfg, configMap: {name: cfg}}] -> the model sees env
[A=1] only; the Deployment's user container gets envFrom as written, env [A, PW, PORT,
K_REVISION, K_CONFIGURATION, K_SERVICE], and the pod gets the volume.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from serving.validation import FieldProblem

__all__ = ["CONTAINER_FIELDS", "POD_FIELDS", "model_view", "pass_through", "problems"]

# Knative's allowed Container fields (pkg/apis/serving/fieldmask.go) the model lacks.
CONTAINER_FIELDS = ("envFrom", "livenessProbe", "startupProbe", "volumeMounts",
                    "securityContext", "imagePullPolicy", "terminationMessagePath",
                    "terminationMessagePolicy")
# Knative's PodSpec fields, those behind its feature flags included: on a cluster the
# user who wrote them meant them. hostNetwork/hostPID/hostIPC stay out, as in Knative.
POD_FIELDS = ("serviceAccountName", "volumes", "imagePullSecrets", "enableServiceLinks",
              "automountServiceAccountToken", "nodeSelector", "tolerations", "affinity",
              "runtimeClassName", "priorityClassName", "schedulerName", "securityContext",
              "hostAliases", "dnsPolicy", "dnsConfig", "topologySpreadConstraints",
              "shareProcessNamespace")
_VALUE_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
# The runtime contract's variables: Surge sets them, so a user may not, from anywhere.
_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})


def _containers(spec: Mapping[str, Any]) -> list[Any]:
    containers = spec.get("containers")
    return list(containers) if isinstance(containers, list) else []


def _is_sourced(entry: Any) -> bool:
    return isinstance(entry, Mapping) and "valueFrom" in entry and "value" not in entry


def model_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The revision spec without the fields only Kubernetes honours (a copy)."""
    out = {k: copy.deepcopy(v) for k, v in spec.items() if k not in POD_FIELDS}
    containers = []
    for c in _containers(spec):
        if not isinstance(c, Mapping):
            containers.append(c)  # the model reports the malformed entry
            continue
        view = {k: copy.deepcopy(v) for k, v in c.items() if k not in CONTAINER_FIELDS}
        if isinstance(c.get("env"), list):
            view["env"] = [copy.deepcopy(e) for e in c["env"] if not _is_sourced(e)]
        containers.append(view)
    if "containers" in spec:
        out["containers"] = containers
    return out


def problems(spec: Mapping[str, Any], path: str = "spec") -> list[FieldProblem]:
    """What is wrong with the pass-through fields of a revision spec (empty when fine)."""
    out: list[FieldProblem] = []
    for i, c in enumerate(_containers(spec)):
        if not isinstance(c, Mapping) or not isinstance(c.get("env"), list):
            continue
        for j, entry in enumerate(c["env"]):
            if not _is_sourced(entry):
                continue
            where = f"{path}.containers[{i}].env[{j}]"
            source = entry["valueFrom"]
            named = [k for k in _VALUE_SOURCES if isinstance(source, Mapping) and k in source]
            if len(named) != 1:
                out.append(FieldProblem(f"{where}.valueFrom", (
                    f"must name exactly one of {', '.join(_VALUE_SOURCES)}")))
            if entry.get("name") in _RESERVED_ENV:
                out.append(FieldProblem(f"{where}.name", (
                    f"{entry['name']!r} is set by Surge (the runtime contract) and may not "
                    "be set by the user")))
    return out


def pass_through(pod_spec: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Add the stored spec's Kubernetes-only fields to a built pod spec (in place)."""
    for key in POD_FIELDS:
        if key in spec:
            pod_spec[key] = copy.deepcopy(spec[key])
    raw = _containers(spec)
    if not raw or not isinstance(raw[0], Mapping):
        return pod_spec
    user, built = raw[0], pod_spec["containers"][0]
    for key in CONTAINER_FIELDS:
        if key in user:
            built[key] = copy.deepcopy(user[key])
    if isinstance(user.get("env"), list):
        contract = [e for e in built.get("env", []) if e.get("name") in _RESERVED_ENV]
        built["env"] = [copy.deepcopy(e) for e in user["env"]] + contract
    return pod_spec
