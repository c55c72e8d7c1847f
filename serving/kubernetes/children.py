"""The serving.knative.dev children: a Service's Configuration and Route, a
Configuration's Revision (pure), as Knative's service and configuration reconcilers
make them (pkg/reconciler/service/resources, pkg/reconciler/configuration/resources).

Inputs and outputs are the objects as the API holds them (plain dicts), so fields
Surge's model does not keep (volumes, imagePullPolicy, ...) pass through unchanged:
- Configuration `<svc>`: spec.template copied from the Service; labels of the Service
  plus serving.knative.dev/service and serviceUID; owned by the Service.
- Route `<svc>`: the Service's traffic with Knative's defaults (no traffic = 100% to
  the latest revision; a target without revisionName follows configurationName
  `<svc>`); owned by the Service.
- Revision: named spec.template.metadata.name, else `<config>-<generation:05d>`;
  the template with config-defaults filled in once, here, as Knative's admission
  webhook does (so a later config-defaults change stamps no new revision); labels
  configuration, configurationGeneration, configurationUID, service, serviceUID, and
  routingState `pending` (routing.py moves it on); owned by the Configuration. Revisions are immutable: an existing one is never updated.

Worked example: Service hello (uid s1, generation 2, no traffic) -> Configuration hello
(template copied) and Route hello with traffic [{configurationName: hello,
latestRevision: true, percent: 100}]; Configuration hello at generation 2 -> Revision
hello-00002 with timeoutSeconds 300 and containers[0].name user-container.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from serving.configmaps import DefaultsConfig, default_revision_spec
from serving.manifests import parse_revision_spec
from serving.model import (
    CONFIGURATION_GENERATION_LABEL,
    CONFIGURATION_LABEL,
    SERVICE_LABEL,
    Revision,
    RevisionSpec,
)

from serving.validation import FieldProblem, ValidationError

from . import podspec
from .names import (
    CONFIGURATION_UID_LABEL,
    GROUP,
    ROUTING_STATE_LABEL,
    SERVICE_UID_LABEL,
    owner_reference,
    revision_name,
)
from .reconcile import is_derivative

API_VERSION = f"{GROUP}/v1"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _owner(obj: Mapping[str, Any]) -> dict[str, object]:
    meta = _meta(obj)
    return owner_reference(obj.get("apiVersion", API_VERSION), obj["kind"], meta["name"],
                           meta.get("uid", ""))


def _child_meta(parent: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    meta = _meta(parent)
    # kubectl's record of the parent's manifest would be wrong on the child.
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    out: dict[str, Any] = {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                           "labels": {**(meta.get("labels") or {}), **labels},
                           "ownerReferences": [_owner(parent)]}
    if annotations:
        out["annotations"] = annotations
    return out


def make_configuration(service: Mapping[str, Any]) -> dict[str, Any]:
    """The Configuration a Service manages (same name; its template)."""
    meta = _meta(service)
    labels = {SERVICE_LABEL: meta["name"], SERVICE_UID_LABEL: meta.get("uid", "")}
    template = copy.deepcopy((service.get("spec") or {}).get("template") or {})
    return {"apiVersion": API_VERSION, "kind": "Configuration",
            "metadata": _child_meta(service, labels), "spec": {"template": template}}


def service_traffic(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Service's spec.traffic as its Route's: Knative's defaults filled in."""
    name = _meta(service)["name"]
    traffic = (service.get("spec") or {}).get("traffic") or []
    if not traffic:
        return [{"configurationName": name, "latestRevision": True, "percent": 100}]
    out = []
    for target in traffic:
        t = dict(target)
        if not t.get("revisionName"):
            t["configurationName"] = name
            t.setdefault("latestRevision", True)
        else:
            t.setdefault("latestRevision", False)
        t.setdefault("percent", 0)
        out.append(t)
    return out


def make_route(service: Mapping[str, Any]) -> dict[str, Any]:
    """The Route a Service manages (same name; its traffic)."""
    meta = _meta(service)
    labels = {SERVICE_LABEL: meta["name"], SERVICE_UID_LABEL: meta.get("uid", "")}
    return {"apiVersion": API_VERSION, "kind": "Route",
            "metadata": _child_meta(service, labels),
            "spec": {"traffic": service_traffic(service)}}


def _template(configuration: Mapping[str, Any]) -> Mapping[str, Any]:
    return (configuration.get("spec") or {}).get("template") or {}


def latest_revision_name(configuration: Mapping[str, Any]) -> str:
    """The revision the Configuration's current generation stamps."""
    meta = _meta(configuration)
    byo = (_template(configuration).get("metadata") or {}).get("name")
    return byo or revision_name(meta["name"], int(meta.get("generation") or 1))


def _read_spec(raw: Mapping[str, Any], path: str) -> RevisionSpec:
    """The model of a revision spec; ValidationError paths start at `path`.

    The Kubernetes-only fields (podspec.py) are checked here and left to the Deployment.
    """
    extra = podspec.problems(raw, path)
    try:
        spec = parse_revision_spec(podspec.model_view(raw))
    except ValidationError as exc:
        # parse_revision_spec names fields under "spec.spec."; say where they really are.
        raise ValidationError([*(FieldProblem(
            path + p.path.removeprefix("spec.spec"), p.reason, p.object)
            for p in exc.problems), *extra]) from None
    if extra:
        raise ValidationError(extra)
    return spec


def defaulted_spec(raw: Mapping[str, Any], defaults: DefaultsConfig,
                   path: str = "spec.template.spec") -> dict[str, Any]:
    """A revision spec with config-defaults filled in; other fields are kept as written.

    ValidationError naming the field (under `path`) when the spec cannot be read; the
    controller reports it on the Configuration's status.
    """
    spec = default_revision_spec(_read_spec(raw, path), defaults)
    out = copy.deepcopy(dict(raw))
    out.update({k: v for k, v in spec.to_knative().items() if k != "containers"})
    containers = [dict(c) for c in out.get("containers") or [{}]]
    containers[0].setdefault("name", spec.container.name)
    out["containers"] = containers
    return out


def make_revision(configuration: Mapping[str, Any], *,
                  defaults: DefaultsConfig = DefaultsConfig()) -> dict[str, Any]:
    """The Revision the Configuration's current generation stamps (ValidationError if
    its template spec cannot be read)."""
    meta = _meta(configuration)
    template = _template(configuration)
    tmeta = template.get("metadata") or {}
    cfg_labels = meta.get("labels") or {}
    labels = {**(tmeta.get("labels") or {}),
              CONFIGURATION_LABEL: meta["name"],
              CONFIGURATION_GENERATION_LABEL: str(meta.get("generation") or 1),
              CONFIGURATION_UID_LABEL: meta.get("uid", ""),
              # Not routed yet; the controller's route labeler takes it from here.
              ROUTING_STATE_LABEL: "pending"}
    for key in (SERVICE_LABEL, SERVICE_UID_LABEL):
        if cfg_labels.get(key):
            labels[key] = cfg_labels[key]
    rev_meta: dict[str, Any] = {"name": latest_revision_name(configuration),
                                "namespace": meta.get("namespace", "default"),
                                "labels": labels, "ownerReferences": [_owner(configuration)]}
    if tmeta.get("annotations"):
        rev_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": API_VERSION, "kind": "Revision", "metadata": rev_meta,
            "spec": defaulted_spec(template.get("spec") or {}, defaults)}


def revision_problem(configuration: Mapping[str, Any], revision: Mapping[str, Any]) -> str | None:
    """Why an existing revision of the Configuration's name cannot be its latest, or None.

    Only a bring-your-own name can collide: the template changed but the name did not,
    and revisions are immutable. Defaults filled in at stamping are not differences.
    """
    spec = _template(configuration).get("spec") or {}
    if is_derivative(spec, revision.get("spec") or {}):
        return None
    return (f"revision {_meta(revision).get('name')!r} already exists with a different "
            "template and revisions are immutable; set spec.template.metadata.name to a "
            "new name")


def revision_model(revision: Mapping[str, Any]) -> Revision:
    """The serving.model Revision of a Revision object (ValidationError if its spec is bad)."""
    meta = _meta(revision)
    labels = dict(meta.get("labels") or {})
    spec = _read_spec(revision.get("spec") or {}, "spec")
    # The model re-adds these three from its own fields when it renders labels.
    configuration = labels.pop(CONFIGURATION_LABEL, "")
    generation = int(labels.pop(CONFIGURATION_GENERATION_LABEL, "0") or 0)
    service = labels.pop(SERVICE_LABEL, "")
    return Revision(meta["name"], meta.get("namespace", "default"), configuration, spec,
                    generation, service, labels, dict(meta.get("annotations") or {}))
