"""Revision reachability labels from the Routes that send them traffic (pure).

Knative's route labeler marks every Revision with `serving.knative.dev/routingState`,
which the autoscaler reads (reference 1.4): `reserve` is unreachable (min-scale and
initial-scale ignored, no scale-down rate limit, free to go to zero); `pending` and
`active` are reachable. The annotation `serving.knative.dev/routes` lists the Routes
naming the revision, and `serving.knative.dev/routingStateModified` says when the
state last changed (Knative's revision GC reads it).

Theory of operation. Knative's labeler is driven by each Route's reconcile; Surge
derives the same labels level-triggered, from every Route of the namespace at once,
so a Route that is deleted (no finalizer here) releases its revisions too:

  routes = the live Routes whose status.traffic names the revision (a tag counts:
           its target gets a host and must answer, even at 0 percent)
  routes non-empty                             -> active
  no routes, the revision was routed before    -> reserve
  (its state is active or reserve, or it still lists routes)
  no routes, never routed                      -> pending (as the Configuration
                                                  stamped it)

Route status, not spec, is the source: it is what the activator routes by, and it
keeps the previous revision while the next one is not ready yet.

Configurations get the routes annotation only (no state): a Route names a
Configuration when its spec or status traffic targets it by configurationName, or
targets one of its revisions (Knative's labeler, metasync.go).
Worked example: Route hello serves hello-00001 100%. hello-00002 is stamped pending;
once it is ready the Route's status names only hello-00002 -> hello-00002 active with
routes "hello", hello-00001 reserve with no routes annotation -> the autoscaler lets
hello-00001 go to zero even with min-scale 1.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from .names import ROUTES_ANNOTATION, ROUTING_STATE_LABEL, ROUTING_STATE_MODIFIED_ANNOTATION

PENDING, ACTIVE, RESERVE = "pending", "active", "reserve"

__all__ = ["ACTIVE", "PENDING", "RESERVE", "configuration_routes", "routed_revisions",
           "routing_state", "with_routes_annotation", "with_routing_state"]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def routed_revisions(route: Mapping[str, Any]) -> frozenset[str]:
    """The revision names a Route's status traffic names (none while it is being deleted)."""
    if _meta(route).get("deletionTimestamp"):
        return frozenset()
    return frozenset(t["revisionName"] for t in (route.get("status") or {}).get("traffic") or ()
                     if t.get("revisionName"))


def routing_state(revision: Mapping[str, Any],
                  routes: Iterable[Mapping[str, Any]]) -> tuple[str, tuple[str, ...]]:
    """(routingState, sorted names of the Routes naming it) of a revision."""
    meta = _meta(revision)
    ns, name = meta.get("namespace", "default"), meta["name"]
    naming = tuple(sorted(_meta(r)["name"] for r in routes
                          if _meta(r).get("namespace", "default") == ns
                          and name in routed_revisions(r)))
    if naming:
        return ACTIVE, naming
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    was_routed = labels.get(ROUTING_STATE_LABEL) in (ACTIVE, RESERVE) \
        or bool(annotations.get(ROUTES_ANNOTATION))
    return (RESERVE if was_routed else PENDING), ()


def with_routing_state(revision: Mapping[str, Any], routes: Iterable[Mapping[str, Any]],
                       now: str) -> dict[str, Any] | None:
    """The revision relabelled for `routes`, or None when its labels are already right.

    `now` (RFC 3339) stamps routingStateModified when the state changes.
    """
    state, naming = routing_state(revision, routes)
    meta = _meta(revision)
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    if labels.get(ROUTING_STATE_LABEL) != state:
        labels[ROUTING_STATE_LABEL] = state
        annotations[ROUTING_STATE_MODIFIED_ANNOTATION] = now
    if naming:
        annotations[ROUTES_ANNOTATION] = ",".join(naming)
    else:
        annotations.pop(ROUTES_ANNOTATION, None)
    if labels == (meta.get("labels") or {}) and annotations == (meta.get("annotations") or {}):
        return None
    out = copy.deepcopy(dict(revision))
    out["metadata"] = {**out["metadata"], "labels": labels}
    if annotations:
        out["metadata"]["annotations"] = annotations
    else:
        out["metadata"].pop("annotations", None)
    return out


def configuration_routes(configuration: Mapping[str, Any], routes: Iterable[Mapping[str, Any]],
                         revision_configs: Mapping[str, str]) -> tuple[str, ...]:
    """Sorted names of the live Routes sending traffic to a Configuration.

    `revision_configs` maps the namespace's revision names to their Configuration.
    """
    meta = _meta(configuration)
    ns, name = meta.get("namespace", "default"), meta["name"]
    out = set()
    for route in routes:
        rmeta = _meta(route)
        if rmeta.get("namespace", "default") != ns or rmeta.get("deletionTimestamp"):
            continue
        targets = [*((route.get("spec") or {}).get("traffic") or ()),
                   *((route.get("status") or {}).get("traffic") or ())]
        if any(t.get("configurationName") == name
               or revision_configs.get(t.get("revisionName") or "") == name for t in targets):
            out.add(rmeta["name"])
    return tuple(sorted(out))


def with_routes_annotation(configuration: Mapping[str, Any], routes: Iterable[Mapping[str, Any]],
                           revision_configs: Mapping[str, str]) -> dict[str, Any] | None:
    """The Configuration annotated with the Routes naming it, or None when already right."""
    naming = configuration_routes(configuration, routes, revision_configs)
    meta = _meta(configuration)
    annotations = dict(meta.get("annotations") or {})
    if naming:
        annotations[ROUTES_ANNOTATION] = ",".join(naming)
    else:
        annotations.pop(ROUTES_ANNOTATION, None)
    if annotations == (meta.get("annotations") or {}):
        return None
    out = copy.deepcopy(dict(configuration))
    out["metadata"] = {**out["metadata"], "annotations": annotations}
    if not annotations:
        out["metadata"].pop("annotations")
    return out

