"""Routes over the desired state: resolution to revisions, status, the ingress table.

Pure functions of a `ServingState` (serving.state), as Knative's route reconciler
computes them. A route resolves each traffic target to a revision: revisionName as
named, configurationName (or a Service's latestRevision) to the configuration's
latestReady (latestCreated while nothing is ready yet). Identical (tag, revision,
latestRevision) entries merge. `resolve_route` also says why a route cannot be fully
served: a missing, foreign or failed revision (the reason and message Knative puts on
AllTrafficAssigned), or ("", "") while a revision is only not ready yet.

`effective_traffic` is what a route serves now: the full resolution when every target
is ready, else the last complete one the state kept (`ServingState.route_traffic`,
so a broken new revision leaves traffic where it was), else for a route never routed,
the targets that are still starting (a first request waits in the activator for the
first pod rather than getting 404). Status and the routing table read only that.

Worked example: route `hello` with {tag: stable, revisionName: hello-00001, 80} and
{tag: canary, latestRevision: true, 20}, hello-00002 ready: hosts
hello.default.example.com -> 80/20 over hello-00001/hello-00002,
stable-hello.default.example.com -> hello-00001 100, canary-hello... -> hello-00002 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from dataplane.types import RevisionKey

from .configmaps import CLUSTER_LOCAL_DOMAIN
from .model import (
    Condition, Configuration, ObjectKey, Revision, Route, RouteStatus, ServiceStatus,
    TrafficTarget,
)

if TYPE_CHECKING:  # state imports this module; the state type is only read here
    from .state import ServingState

__all__ = [
    "HostRoute",
    "ResolvedTarget",
    "configuration_conditions",
    "effective_traffic",
    "resolve_route",
    "route_status",
    "routing_table",
    "service_status",
]


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A traffic entry resolved to a concrete revision (Knative's status traffic)."""

    revision_name: str
    percent: int
    tag: str = ""
    latest_revision: bool = False
    configuration_name: str = ""



@dataclass(frozen=True, slots=True)
class HostRoute:
    """Where one external host sends requests: percent splits and the route's tags."""

    host: str
    splits: tuple[tuple[RevisionKey, int], ...]
    tags: Mapping[str, RevisionKey]
    tag: str = ""  # the tag this host serves; "" for the route's own host

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))



# (reason, message) of the first failing target, or ("", "") when only waiting for readiness.
_Problem = tuple[str, str] | None
_NO_REVISION_YET = ("", "")  # a configuration target whose first revision is not stamped yet


def resolve_route(state: ServingState,
                  route: Route) -> tuple[tuple[ResolvedTarget, ...], _Problem]:
    """The route's targets as revisions; the problem is None only if all are ready."""
    out: list[ResolvedTarget] = []
    failure: tuple[str, str] | None = None
    waiting = unresolved = False
    for t in route.traffic:
        rev, why = _target_revision(state, route, t)
        if why == _NO_REVISION_YET:
            unresolved = True  # nothing to route to yet, but nothing wrong either
            continue
        if why is not None:
            failure = failure or why
            continue
        assert rev is not None
        waiting = waiting or not rev.status.ready
        resolved = ResolvedTarget(rev.name, t.percent or 0, t.tag, bool(t.latest_revision),
                                  rev.configuration)
        same = [i for i, o in enumerate(out) if (o.tag, o.revision_name, o.latest_revision)
                == (resolved.tag, resolved.revision_name, resolved.latest_revision)]
        if same:
            out[same[0]] = replace(out[same[0]], percent=out[same[0]].percent + resolved.percent)
        else:
            out.append(resolved)
    if failure is not None:
        return (), failure
    if unresolved:
        return (), _NO_REVISION_YET
    return tuple(out), (("", "") if waiting else None)


def _target_revision(state: ServingState, route: Route,
                     t: TrafficTarget) -> tuple[Revision | None, tuple[str, str] | None]:
    """The revision one target points at, or why it cannot point anywhere."""
    ns = route.metadata.namespace
    if t.revision_name:
        rev = state.revisions.get(RevisionKey(ns, t.revision_name))
        if rev is None:
            return None, ("RevisionMissing", f"revision {t.revision_name!r} referenced in "
                                             "traffic not found")
        if route.owner_service and rev.service != route.owner_service:
            return None, ("RevisionNotOwned", f"revision {t.revision_name!r} belongs to "
                                              f"{rev.service or 'no'} service, not "
                                              f"{route.owner_service!r}")
    else:
        cfg = state.configurations.get(ObjectKey(ns, t.configuration_name))
        if cfg is None:
            return None, ("ConfigurationMissing", f"configuration {t.configuration_name!r} "
                                                  "referenced in traffic not found")
        name = cfg.status.latest_ready_revision_name or cfg.status.latest_created_revision_name
        rev = state.revisions.get(RevisionKey(ns, name))
        if rev is None and cfg.status.latest_ready_revision_name:
            return None, ("RevisionMissing", f"revision {name!r} of configuration "
                                             f"{cfg.metadata.name!r} not found")
        if rev is None:
            # Just created: its first revision is on the way (Knative: Unknown, "waiting
            # for a Revision to become ready"), not a failure.
            return None, _NO_REVISION_YET
    if rev.status.ready is False:
        return None, ("RevisionFailed", f"revision {rev.name!r} failed: "
                                        f"{rev.status.reason}: {rev.status.message}".rstrip(": "))
    return rev, None


def effective_traffic(state: ServingState, key: ObjectKey) -> tuple[ResolvedTarget, ...]:
    """The traffic a route serves now: all-ready resolution, else its last complete one,
    else (never routed yet) targets that are still starting, else nothing."""
    resolved, problem = resolve_route(state, state.routes[key])
    if problem is None:
        return resolved
    if key in state.route_traffic:
        return state.route_traffic[key]
    return resolved  # () when a target failed or is missing


def _domain(state: ServingState, route: Route) -> str:
    return state.domain.lookup(route.metadata.labels)


def _host(state: ServingState, route: Route, tag: str = "") -> str:
    meta = route.metadata
    return f"{tag + '-' if tag else ''}{meta.name}.{meta.namespace}.{_domain(state, route)}"


def route_status(state: ServingState, key: ObjectKey) -> RouteStatus:
    """A route's URL, address, resolved traffic with tag URLs, and conditions."""
    route = state.routes[key]
    _, problem = resolve_route(state, route)
    if problem is None:
        assigned = Condition("AllTrafficAssigned", "True")
    elif problem[0]:
        assigned = Condition("AllTrafficAssigned", "False", *problem)
    else:
        assigned = Condition("AllTrafficAssigned", "Unknown", "RevisionNotReady",
                             "waiting for a revision in traffic to become ready")
    traffic = tuple(TrafficTarget(
        tag=t.tag, revision_name=t.revision_name, latest_revision=t.latest_revision,
        percent=t.percent, url=f"http://{_host(state, route, t.tag)}" if t.tag else "")
        for t in effective_traffic(state, key))
    address = f"http://{key.name}.{key.namespace}.{CLUSTER_LOCAL_DOMAIN}"
    return RouteStatus(f"http://{_host(state, route)}", address, traffic,
                       (assigned, replace(assigned, type="Ready")))


def _configuration_ready(state: ServingState, cfg: Configuration) -> Condition:
    name = cfg.status.latest_created_revision_name
    rev = state.revisions.get(RevisionKey(cfg.metadata.namespace, name))
    if rev is None or rev.status.ready is None:
        return Condition("Ready", "Unknown", "RevisionNotReady",
                         f"revision {name!r} is not ready yet")
    if rev.status.ready is False:
        return Condition("Ready", "False", "RevisionFailed",
                         f"revision {name!r} failed: {rev.status.reason}: "
                         f"{rev.status.message}".rstrip(": "))
    return Condition("Ready", "True")


def configuration_conditions(state: ServingState, key: ObjectKey) -> tuple[Condition, ...]:
    """A Configuration's Ready condition: whether its latest created revision is ready."""
    return (_configuration_ready(state, state.configurations[key]),)


def service_status(state: ServingState, key: ObjectKey) -> ServiceStatus:
    """A Service's status: ConfigurationsReady, RoutesReady and Ready, URLs and traffic."""
    svc, cfg = state.services[key], state.configurations[key]
    configs = replace(_configuration_ready(state, cfg), type="ConfigurationsReady")
    route = route_status(state, key)
    routes = replace(route.conditions[-1], type="RoutesReady")
    worst = next((c for c in (configs, routes) if c.status == "False"),
                 next((c for c in (configs, routes) if c.status == "Unknown"), None))
    ready = Condition("Ready", "True") if worst is None else replace(worst, type="Ready")
    return ServiceStatus(svc.metadata.generation, (configs, ready, routes), route.url,
                         route.address_url, route.traffic,
                         cfg.status.latest_created_revision_name,
                         cfg.status.latest_ready_revision_name)


def routing_table(state: ServingState) -> tuple[HostRoute, ...]:
    """Per external host, the revisions and percents to split across, and the tags.

    The route's own host splits by percent over its resolved traffic (0% entries
    dropped, a revision named twice summed); each tag host sends 100% to its tag's
    revision. Routes with nothing to serve are left out (the activator answers 404).
    """
    table: list[HostRoute] = []
    for key in sorted(state.routes):
        route = state.routes[key]
        traffic = effective_traffic(state, key)
        if not traffic:
            continue
        ns = key.namespace
        tags = {t.tag: RevisionKey(ns, t.revision_name) for t in traffic if t.tag}
        percents: dict[str, int] = {}
        for t in traffic:
            if t.percent:
                percents[t.revision_name] = percents.get(t.revision_name, 0) + t.percent
        splits = tuple((RevisionKey(ns, name), pct) for name, pct in percents.items())
        table.append(HostRoute(_host(state, route), splits, tags))
        table += [HostRoute(_host(state, route, tag), ((rev, 100),), tags, tag)
                  for tag, rev in tags.items()]
    return tuple(table)
