"""Status of Services, Configurations, Routes and Revisions from the cluster (pure).

Each function takes the objects as listed from the API (plain dicts) and `now` (an
RFC 3339 timestamp the caller reads once per reconcile) and returns the `status` to
write. Conditions keep their lastTransitionTime while their status stays the same, so
a reconcile that changes nothing writes nothing (reconcile.plan_status).

- Revision (Knative's revision_lifecycle.go, reconcile_resources.go): ResourcesAvailable
  and ContainerHealthy, from the Deployment and, while pods are missing, the first pod
  problem found (image pull, unschedulable, a crashed container); Ready = both. Once
  a pod was ready (or initial scale is 0) ResourcesAvailable stays True when the
  revision scales to zero. Active: False/NoTraffic at 0 replicas, True with a ready
  pod, else Unknown/Queued. actualReplicas / desiredReplicas from the Deployment.
- Configuration: latestCreatedRevisionName once the current generation's revision
  exists; latestReadyRevisionName by Knative's rule (the created one if ready, else
  the newest ready one newer than the current, never back); Ready from the created one.
  The rule is serving.state's, rewritten over Kubernetes objects because serving.state
  keeps it private to its own ServingState.
- Route: serving.state's resolution, reused as is (traffic, tag URLs, config-domain,
  keeping the last complete traffic while a target is not ready, the AllTrafficAssigned
  reasons): the Route and the objects it names are turned into a ServingState, and the
  previous status traffic stands for the last complete resolution.
- Service: propagated from its children's statuses, as Knative's service reconciler does
  (serving.state recomputes it from the whole state instead): ConfigurationsReady and
  RoutesReady copy the children's Ready (Unknown/OutOfDate while a child has not caught
  up with its spec); Ready is the worse of the two.
- `failed_status`: Ready False with a reason and a message naming the field, for
  objects that cannot be reconciled (an invalid spec, a child name taken).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dataplane.types import RevisionKey
from serving.configmaps import DomainConfig
from serving.model import (
    CONFIGURATION_GENERATION_LABEL,
    CONFIGURATION_LABEL,
    SERVICE_LABEL,
    Condition,
    Configuration,
    ConfigurationStatus,
    ObjectKey,
    ObjectMeta,
    Revision,
    RevisionSpec,
    RevisionStatus,
    Route,
    TrafficTarget,
)
from serving.state import ResolvedTarget, ServingState, route_status as _route_status
from serving.validation import FieldProblem

from .deployment import QUEUE_CONTAINER_NAME

READY = "Ready"
REASON_INVALID = "InvalidSpec"
REASON_OUT_OF_DATE = "OutOfDate"
# Waiting reasons that mean the pod cannot start until someone changes something.
_FATAL_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                            "CreateContainerConfigError", "CreateContainerError"})


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _conditions(obj: Mapping[str, Any] | None) -> Sequence[Mapping[str, Any]]:
    return ((obj or {}).get("status") or {}).get("conditions") or ()


def condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition `type_` of an object's status, or None."""
    return next((c for c in _conditions(obj) if c.get("type") == type_), None)


def is_ready(obj: Mapping[str, Any] | None) -> bool | None:
    """True, False, or None (Unknown or absent) from the object's Ready condition."""
    c = condition(obj, READY)
    return {"True": True, "False": False}.get(c.get("status", "")) if c else None


def render_conditions(new: Iterable[Condition], old: Sequence[Mapping[str, Any]],
                      now: str) -> list[dict[str, Any]]:
    """Conditions sorted by type, each keeping its old lastTransitionTime if its status holds."""
    previous = {c.get("type"): c for c in old}
    out = []
    for c in sorted(new, key=lambda c: c.type):
        d = c.to_knative()
        was = previous.get(c.type)
        same = was is not None and was.get("status") == c.status and was.get("lastTransitionTime")
        d["lastTransitionTime"] = was["lastTransitionTime"] if same else now
        out.append(d)
    return out


def _all_of(conditions: Sequence[Condition]) -> Condition:
    """Ready from its dependents: the first False, else the first Unknown, else True."""
    for status in ("False", "Unknown"):
        worst = next((c for c in conditions if c.status == status), None)
        if worst is not None:
            return Condition(READY, status, worst.reason, worst.message)
    return Condition(READY, "True")


def problems_message(problems: Iterable[FieldProblem]) -> str:
    """FieldProblems as one message: `path: reason` joined by '; '."""
    return "; ".join(f"{p.path}: {p.reason}" if p.path else p.reason for p in problems)


def failed_status(obj: Mapping[str, Any], reason: str, message: str, now: str) -> dict[str, Any]:
    """Ready False with `reason` and `message` (an invalid spec, a name we do not own)."""
    return {"observedGeneration": _meta(obj).get("generation", 0),
            "conditions": render_conditions([Condition(READY, "False", reason, message)],
                                            _conditions(obj), now)}


# ------------------------------------------------------------------------- revision


def _pod_problem(pods: Iterable[Mapping[str, Any]]) -> tuple[str, Condition] | None:
    """(condition type, condition) of the first pod problem that needs a person.

    As Knative's revision reconciler reads a pod: unschedulable -> ResourcesAvailable;
    a user container that terminated (exit code 0 included: it should serve forever)
    -> ContainerHealthy `ExitCode<n>`. Unlike Knative, a waiting reason that will not
    clear by itself (image pull, bad config) is reported at once, from any container,
    the sidecar included (a queue-sidecar-image the nodes cannot pull is the classic
    first-install mistake), rather than after the progress deadline.
    """
    for pod in pods:
        status = pod.get("status") or {}
        for c in status.get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return "ResourcesAvailable", Condition(
                    "ResourcesAvailable", "False", c.get("reason") or "Unschedulable",
                    c.get("message", ""))
        for cs in status.get("containerStatuses") or ():
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _FATAL_WAITING:
                return "ResourcesAvailable", Condition(
                    "ResourcesAvailable", "False", waiting["reason"], waiting.get("message", ""))
            if cs.get("name") == QUEUE_CONTAINER_NAME:
                continue
            term = (cs.get("lastState") or {}).get("terminated") \
                or (cs.get("state") or {}).get("terminated")
            if term:
                code = term.get("exitCode", 0)
                message = term.get("message") or (
                    "container exited with no error" if code == 0 else term.get("reason", ""))
                return "ContainerHealthy", Condition(
                    "ContainerHealthy", "False", f"ExitCode{code}",
                    f"Container failed with: {message}".rstrip(": "))
    return None


def revision_status(revision: Mapping[str, Any], deployment: Mapping[str, Any] | None, *,
                    now: str, pods: Iterable[Mapping[str, Any]] = (),
                    initial_scale: int = 1) -> dict[str, Any]:
    """A Revision's status from its Deployment (and its pods, for failure reasons)."""
    old = _conditions(revision)
    was_available = any(c.get("type") == "ResourcesAvailable" and c.get("status") == "True"
                        for c in old)
    status: dict[str, Any] = {"observedGeneration": _meta(revision).get("generation", 0)}
    if deployment is None:
        deploying = ("Unknown", "Deploying", "")
        conds = [Condition(t, *deploying) for t in ("ResourcesAvailable", "ContainerHealthy",
                                                    "Active")]
    else:
        spec_replicas = (deployment.get("spec") or {}).get("replicas", 1)
        dstatus = deployment.get("status") or {}
        ready = dstatus.get("readyReplicas", 0)
        status.update(actualReplicas=ready, desiredReplicas=spec_replicas)
        available = Condition("ResourcesAvailable", "Unknown", "Deploying")
        healthy = Condition("ContainerHealthy", "Unknown", "Deploying")
        if ready > 0 or was_available or (spec_replicas == 0 and initial_scale == 0):
            available = Condition("ResourcesAvailable", "True")
            healthy = Condition("ContainerHealthy", "True")
        for c in dstatus.get("conditions") or ():
            if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                available = Condition("ResourcesAvailable", "False", "ProgressDeadlineExceeded",
                                      c.get("message", ""))
            elif c.get("type") == "ReplicaFailure" and c.get("status") == "True":
                available = Condition("ResourcesAvailable", "False",
                                      c.get("reason") or "ReplicaFailure", c.get("message", ""))
        # Only a revision with no ready pod reads its pods, as in Knative: one bad pod
        # among ready ones is the Deployment's to replace, not a revision failure.
        problem = _pod_problem(pods) if ready == 0 and spec_replicas > 0 else None
        if problem is not None and problem[0] == "ResourcesAvailable":
            available = problem[1]
        elif problem is not None:
            healthy = problem[1]
        if spec_replicas == 0:
            active = Condition("Active", "False", "NoTraffic",
                               "The target is not receiving traffic.")
        elif ready > 0:
            active = Condition("Active", "True")
        else:
            active = Condition("Active", "Unknown", "Queued",
                               "Requests to the target are being buffered as resources are "
                               "provisioned.")
        conds = [available, healthy, active]
    conds.append(_all_of([c for c in conds if c.type != "Active"]))
    status["conditions"] = render_conditions(conds, old, now)
    return status


# -------------------------------------------------------------------- configuration


def _generation(revision: Mapping[str, Any]) -> int:
    try:
        return int((_meta(revision).get("labels") or {}).get(CONFIGURATION_GENERATION_LABEL, 0))
    except ValueError:
        return 0


def configuration_status(configuration: Mapping[str, Any],
                         revisions: Iterable[Mapping[str, Any]], *, now: str,
                         latest_created: str) -> dict[str, Any]:
    """A Configuration's status; `latest_created` names its current generation's revision."""
    meta = _meta(configuration)
    own = {(_meta(r)).get("name"): r for r in revisions
           if (_meta(r).get("labels") or {}).get(CONFIGURATION_LABEL) == meta.get("name")}
    previous = (configuration.get("status") or {})
    created_name = latest_created if latest_created in own \
        else previous.get("latestCreatedRevisionName", "")
    ready_name = previous.get("latestReadyRevisionName", "")
    created = own.get(created_name)
    if created is not None and is_ready(created):
        ready_name = created_name
    else:
        floor = _generation(own[ready_name]) if ready_name in own else 0
        newer = [r for r in own.values() if is_ready(r) and _generation(r) > floor]
        if newer:
            ready_name = _meta(max(newer, key=_generation))["name"]
    state = is_ready(created) if created is not None else None
    if state is True:
        ready = Condition(READY, "True")
    elif state is False:
        c = condition(created, READY) or {}
        ready = Condition(READY, "False", "RevisionFailed",
                          f"Revision {created_name!r} failed with message: "
                          f"{c.get('message') or c.get('reason', '')}.")
    else:
        ready = Condition(READY, "Unknown", "RevisionNotReady" if created else "Deploying",
                          f"revision {created_name or latest_created!r} is not ready yet")
    out: dict[str, Any] = {"observedGeneration": meta.get("generation", 0),
                           "conditions": render_conditions([ready], _conditions(configuration),
                                                           now)}
    if created_name:
        out["latestCreatedRevisionName"] = created_name
    if ready_name:
        out["latestReadyRevisionName"] = ready_name
    return out


# ---------------------------------------------------------------------------- route


def _target(t: Mapping[str, Any]) -> TrafficTarget:
    name = t.get("revisionName") or ""
    latest = t.get("latestRevision")
    return TrafficTarget(tag=t.get("tag") or "", revision_name=name,
                         configuration_name=t.get("configurationName") or "",
                         latest_revision=(not name) if latest is None else bool(latest),
                         percent=t.get("percent") or 0)


def _revision(r: Mapping[str, Any]) -> Revision:
    meta, labels = _meta(r), _meta(r).get("labels") or {}
    c = condition(r, READY) or {}
    return Revision(meta["name"], meta.get("namespace", "default"),
                    labels.get(CONFIGURATION_LABEL, ""), RevisionSpec(), _generation(r),
                    labels.get(SERVICE_LABEL, ""),
                    status=RevisionStatus(is_ready(r), c.get("reason", ""), c.get("message", "")))


def route_status(route: Mapping[str, Any], configurations: Iterable[Mapping[str, Any]],
                 revisions: Iterable[Mapping[str, Any]], *, domain: DomainConfig,
                 now: str) -> dict[str, Any]:
    """A Route's status: URL, address, resolved traffic with tag URLs, and conditions."""
    configurations = list(configurations)  # read twice below
    meta = _meta(route)
    key = ObjectKey(meta.get("namespace", "default"), meta["name"])
    owner = (meta.get("labels") or {}).get(SERVICE_LABEL, "")
    model = Route(ObjectMeta(key.name, key.namespace, meta.get("labels") or {}),
                  tuple(_target(t) for t in (route.get("spec") or {}).get("traffic") or ()),
                  owner_service=owner)
    configs = {}
    for c in configurations:
        cmeta, cstatus = _meta(c), c.get("status") or {}
        cfg_key = ObjectKey(cmeta.get("namespace", "default"), cmeta["name"])
        configs[cfg_key] = Configuration(
            ObjectMeta(cfg_key.name, cfg_key.namespace), status=ConfigurationStatus(
                cstatus.get("latestCreatedRevisionName", ""),
                cstatus.get("latestReadyRevisionName", "")))
    revs = {RevisionKey(m.namespace, m.name): m for m in map(_revision, revisions)}
    previous = (route.get("status") or {}).get("traffic") or ()
    kept = tuple(ResolvedTarget(t.get("revisionName", ""), t.get("percent") or 0,
                                t.get("tag", ""), bool(t.get("latestRevision")))
                 for t in previous if t.get("revisionName"))
    state = ServingState(routes={key: model}, configurations=configs, revisions=revs,
                         route_traffic={key: kept} if kept else {}, domain=domain)
    out = _route_status(state, key).to_knative()
    out["observedGeneration"] = meta.get("generation", 0)
    conds = [Condition(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
             for c in out["conditions"]]
    # A Configuration that failed before any revision became ready (a bad template, a
    # first revision that failed) will not be waited out: Knative marks the Route False.
    failed = [t.configuration_name for t in model.traffic if t.configuration_name
              and not t.revision_name and _failed_without_ready(configurations, key.namespace,
                                                                t.configuration_name)]
    if failed and all(c.status == "Unknown" for c in conds):
        why = f"Configuration {failed[0]!r} does not have any ready Revision."
        conds = [Condition(c.type, "False", "RevisionMissing", why) for c in conds]
    out["conditions"] = render_conditions(conds, _conditions(route), now)
    return out


def _failed_without_ready(configurations: Iterable[Mapping[str, Any]], namespace: str,
                          name: str) -> bool:
    for c in configurations:
        cmeta, cstatus = _meta(c), c.get("status") or {}
        if (cmeta.get("namespace", "default"), cmeta.get("name")) == (namespace, name):
            return is_ready(c) is False and not cstatus.get("latestReadyRevisionName")
    return False


# -------------------------------------------------------------------------- service


def _child_ready(child: Mapping[str, Any] | None, type_: str, kind: str) -> Condition:
    meta = _meta(child)
    if child is None or (child.get("status") or {}).get("observedGeneration") \
            != meta.get("generation"):
        return Condition(type_, "Unknown", REASON_OUT_OF_DATE,
                         f"The {kind} is still working to reflect the latest desired "
                         "specification.")
    c = condition(child, READY) or {}
    return Condition(type_, c.get("status", "Unknown"), c.get("reason", ""), c.get("message", ""))


def service_status(service: Mapping[str, Any], configuration: Mapping[str, Any] | None,
                   route: Mapping[str, Any] | None, *, now: str) -> dict[str, Any]:
    """A Service's status, propagated from its Configuration's and Route's."""
    configs = _child_ready(configuration, "ConfigurationsReady", "Configuration")
    routes = _child_ready(route, "RoutesReady", "Route")
    out: dict[str, Any] = {"observedGeneration": _meta(service).get("generation", 0),
                           "conditions": render_conditions(
                               [configs, routes, _all_of([configs, routes])],
                               _conditions(service), now)}
    rstatus = (route or {}).get("status") or {}
    for key in ("url", "address", "traffic"):
        if key in rstatus:
            out[key] = rstatus[key]
    cstatus = (configuration or {}).get("status") or {}
    for key in ("latestCreatedRevisionName", "latestReadyRevisionName"):
        if cstatus.get(key):
            out[key] = cstatus[key]
    return out
