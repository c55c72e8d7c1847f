"""The control plane: Knative's object model from YAML, validation, the desired state, and
the local stack that serves it (`surge up`).

Modules: `model` (frozen Service/Configuration/Route/Revision and status types, rendered
Knative-shaped by `to_knative()`), `manifests` (YAML documents to objects), `validation`
(Knative's admission rules as FieldProblems), `configmaps` (config-defaults,
config-domain, config-autoscaler), `state` (the pure desired-state logic: apply, update,
delete, readiness, snapshots), `routing` (route resolution, status, the routing table),
`reconciler` (desired state to per-revision plans), `controller` and `autoscaling` (the
stack's control loops), `stack` (`surge up`), `admin`/`client`/`cli` (the admin API and
the `surge` command).

Names are imported on first use (PEP 562): `surge get` must not pay for numpy and
aiohttp, which the control plane pulls in through the autoscaler, on every command.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule that defines it
_EXPORTS = {
    "DEFAULT_DOMAIN": "configmaps",
    "ApplyResult": "state",
    "Autoscaling": "autoscaling",
    "Change": "state",
    "Condition": "model",
    "ConfigMap": "model",
    "Configuration": "model",
    "ConfigurationStatus": "model",
    "Container": "model",
    "ContainerPort": "model",
    "Controller": "controller",
    "DefaultsConfig": "configmaps",
    "DomainConfig": "configmaps",
    "DomainEntry": "configmaps",
    "EnvVar": "model",
    "FieldProblem": "validation",
    "HostRoute": "routing",
    "MultiscalerStatSink": "autoscaling",
    "ObjectKey": "model",
    "ObjectMeta": "model",
    "ObjectNotFound": "state",
    "ParsedManifests": "manifests",
    "Plan": "reconciler",
    "ResolvedTarget": "routing",
    "Revision": "model",
    "RevisionPlan": "reconciler",
    "RevisionSpec": "model",
    "RevisionStatus": "model",
    "RevisionTemplate": "model",
    "Route": "model",
    "RouteStatus": "model",
    "Service": "model",
    "ServiceStatus": "model",
    "ServingObject": "model",
    "ServingState": "state",
    "TrafficTarget": "model",
    "ValidationError": "validation",
    "apply": "state",
    "configuration_conditions": "routing",
    "default_revision_spec": "configmaps",
    "delete_service": "state",
    "describe_service": "state",
    "effective_traffic": "routing",
    "mark_revision_ready": "state",
    "parse_autoscaler_configmap": "configmaps",
    "parse_defaults_config": "configmaps",
    "parse_domain_config": "configmaps",
    "parse_manifests": "manifests",
    "parse_object": "manifests",
    "parse_revision_spec": "manifests",
    "plan": "reconciler",
    "pod_events": "controller",
    "pod_to_json": "controller",
    "route_status": "routing",
    "routing_table": "routing",
    "run": "stack",
    "service_status": "routing",
    "state_from_dict": "state",
    "state_to_dict": "state",
    "update_service": "state",
}

__all__ = [
    "DEFAULT_DOMAIN",
    "ApplyResult",
    "Autoscaling",
    "Change",
    "Condition",
    "ConfigMap",
    "Configuration",
    "ConfigurationStatus",
    "Container",
    "ContainerPort",
    "Controller",
    "DefaultsConfig",
    "DomainConfig",
    "DomainEntry",
    "EnvVar",
    "FieldProblem",
    "HostRoute",
    "MultiscalerStatSink",
    "ObjectKey",
    "ObjectMeta",
    "ObjectNotFound",
    "ParsedManifests",
    "Plan",
    "ResolvedTarget",
    "Revision",
    "RevisionPlan",
    "RevisionSpec",
    "RevisionStatus",
    "RevisionTemplate",
    "Route",
    "RouteStatus",
    "Service",
    "ServiceStatus",
    "ServingObject",
    "ServingState",
    "TrafficTarget",
    "ValidationError",
    "apply",
    "configuration_conditions",
    "default_revision_spec",
    "delete_service",
    "describe_service",
    "effective_traffic",
    "mark_revision_ready",
    "parse_autoscaler_configmap",
    "parse_defaults_config",
    "parse_domain_config",
    "parse_manifests",
    "parse_object",
    "parse_revision_spec",
    "plan",
    "pod_events",
    "pod_to_json",
    "route_status",
    "routing_table",
    "run",
    "service_status",
    "state_from_dict",
    "state_to_dict",
    "update_service",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted({*globals(), *__all__})
