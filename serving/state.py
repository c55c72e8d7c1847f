"""The control plane's desired state and the pure logic that changes it.

A `ServingState` is an immutable snapshot: Services, Configurations, Routes, Revisions,
the three ConfigMaps, and the traffic each route last resolved completely. Every
operation (`apply`, `update_service`, `delete_service`, `mark_revision_ready`) takes a
state and returns a new one; nothing here reads a clock or does I/O (`now`, wall-clock
epoch seconds, is only stamped on new objects as their creationTimestamp).

Theory of operation (Knative's configuration and route reconcilers, done in one step):

1. `apply` validates every object against the configs in force (ConfigMaps of the same
   batch first), and applies all or raises ValidationError with the state untouched.
2. A template change bumps the Configuration's generation and stamps a Revision named
   `<config>-<generation:05d>` or `spec.template.metadata.name`. A Service change bumps
   only the Service's generation when only traffic changed, so no revision is made.
3. `latestCreatedRevisionName` is the revision just stamped. `latestReadyRevisionName`
   becomes it once the platform reports it ready; while it is not (or if it failed),
   latestReady moves only to a newer ready revision, never back, so a broken revision
   leaves traffic on the last good one.
4. After every operation each route is resolved (serving.routing): if every target is
   ready the result becomes the route's kept traffic (`route_traffic`); if one is
   missing, failed or not ready yet, the route keeps its last complete traffic, as
   Knative does. Status and the routing table are computed from that in
   serving.routing (re-exported here).

Worked example: apply `hello` (v1) → hello-00001 created, traffic hello-00001 100% while
it starts. Ready → latestReady hello-00001. Apply v2 → hello-00002 created, traffic
stays on hello-00001 until hello-00002 is ready; if it fails, it stays there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from autoscaler import AutoscalerConfig
from dataplane.types import RevisionKey

from .configmaps import (
    AUTOSCALER_CONFIG, DEFAULTS_CONFIG, DefaultsConfig, DomainConfig,
    default_revision_spec, ignored_keys, parse_autoscaler_configmap, parse_defaults_config,
    parse_domain_config,
)
from .manifests import parse_object, parse_revision_spec
# Route resolution, status and the routing table live in serving.routing; they are
# re-exported here, where callers found them first.
from .routing import (
    HostRoute, ResolvedTarget, configuration_conditions, effective_traffic, resolve_route,
    route_status, routing_table, service_status,
)
from .model import (
    SERVICE_LABEL, ConfigMap, Configuration, ConfigurationStatus, EnvVar, ObjectKey, ObjectMeta,
    Revision, RevisionStatus, RevisionTemplate, Route, Service, ServingObject, TrafficTarget,
)
from .validation import (
    FieldProblem, ValidationError, validate_configuration, validate_route, validate_service,
)


@dataclass(frozen=True, slots=True)
class ServingState:
    """The whole desired state; immutable, replaced by every operation."""

    services: Mapping[ObjectKey, Service] = field(default_factory=dict)
    configurations: Mapping[ObjectKey, Configuration] = field(default_factory=dict)
    routes: Mapping[ObjectKey, Route] = field(default_factory=dict)
    revisions: Mapping[RevisionKey, Revision] = field(default_factory=dict)
    # The last traffic each route resolved with every target ready (kept across failures).
    route_traffic: Mapping[ObjectKey, tuple[ResolvedTarget, ...]] = field(default_factory=dict)
    configmaps: Mapping[str, ConfigMap] = field(default_factory=dict)  # as applied
    autoscaler: AutoscalerConfig = AutoscalerConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    domain: DomainConfig = DomainConfig()

    def __post_init__(self) -> None:
        for name in ("services", "configurations", "routes", "revisions", "route_traffic",
                     "configmaps"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True, slots=True)
class Change:
    """What an operation did to one object, printed the way kubectl apply does."""

    kind: str
    namespace: str
    name: str
    action: str  # created, configured, unchanged, deleted

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} {self.action}"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The new state, the revisions created or deleted, and a line per object touched."""

    state: ServingState
    created_revisions: tuple[RevisionKey, ...] = ()
    changes: tuple[Change, ...] = ()
    deleted_revisions: tuple[RevisionKey, ...] = ()
    warnings: tuple[str, ...] = ()


class ObjectNotFound(LookupError):
    """The named object is not in the state."""


class _Work:
    """A mutable copy of a state while an operation builds the next one."""

    def __init__(self, s: ServingState) -> None:
        self.services, self.configurations = dict(s.services), dict(s.configurations)
        self.routes, self.revisions = dict(s.routes), dict(s.revisions)
        self.route_traffic, self.configmaps = dict(s.route_traffic), dict(s.configmaps)
        self.autoscaler, self.defaults, self.domain = s.autoscaler, s.defaults, s.domain
        self.created: list[RevisionKey] = []
        self.changes: list[Change] = []
        self.problems: list[FieldProblem] = []

    def freeze(self) -> ServingState:
        return _settle(ServingState(
            self.services, self.configurations, self.routes, self.revisions,
            self.route_traffic, self.configmaps, self.autoscaler, self.defaults, self.domain))


def apply(state: ServingState, objects: Iterable[ServingObject], *, now: float) -> ApplyResult:
    """Validate and apply `objects` all together, or raise ValidationError changing nothing."""
    objects = list(objects)
    w, warnings = _Work(state), []
    # ConfigMaps first, so the objects of the same batch are checked against them.
    for cm in (o for o in objects if isinstance(o, ConfigMap)):
        warnings += _apply_configmap(w, cm)
    for obj in objects:
        if isinstance(obj, Service):
            _apply_service(w, obj, now)
        elif isinstance(obj, Configuration):
            _apply_configuration(w, obj, now)
        elif isinstance(obj, Route):
            _apply_route(w, obj, now)
    if w.problems:
        raise ValidationError(w.problems)
    return ApplyResult(w.freeze(), tuple(w.created), tuple(w.changes), (), tuple(warnings))


def _parts(key: ObjectKey | RevisionKey) -> tuple[str, str]:
    """(namespace, name) of a key."""
    return key.namespace, key.name


def _apply_configmap(w: _Work, cm: ConfigMap) -> list[str]:
    try:
        if cm.name == AUTOSCALER_CONFIG:
            w.autoscaler = parse_autoscaler_configmap(cm.data)
        elif cm.name == DEFAULTS_CONFIG:
            w.defaults = parse_defaults_config(cm.data)
        else:
            w.domain = parse_domain_config(cm.data)
    except ValidationError as exc:
        w.problems += exc.problems
        return []
    old = w.configmaps.get(cm.name)
    w.configmaps[cm.name] = cm
    w.changes.append(Change("ConfigMap", cm.namespace, cm.name, _action(old, cm)))
    ignored = ignored_keys(cm.name, cm.data)
    return [f"ConfigMap/{cm.name}: ignoring keys Surge does not use: {', '.join(ignored)}"] \
        if ignored else []


def _action(old: Any, new: Any) -> str:
    return "created" if old is None else "unchanged" if old == new else "configured"


def _stamp(meta: ObjectMeta, old: ObjectMeta | None, changed: bool, now: float) -> ObjectMeta:
    """`meta` with the generation (bumped on spec change) and creation time carried over."""
    if old is None:
        return replace(meta, generation=1, creation_timestamp=now)
    return replace(meta, generation=old.generation + (1 if changed else 0),
                   creation_timestamp=old.creation_timestamp)


def _owner_conflict(w: _Work, kind: str, key: ObjectKey, owner: str) -> bool:
    """Record a problem if `kind` `key` exists with another owner than `owner`."""
    existing = (w.configurations if kind == "Configuration" else w.routes).get(key)
    if existing is None or existing.owner_service == owner:
        return False
    who = f"Service/{existing.owner_service}" if existing.owner_service else "no Service"
    change = f"change Service/{existing.owner_service}" if existing.owner_service \
        else "pick another name"
    label = f"Service/{owner}" if owner else f"{kind}/{key.name}"
    w.problems.append(FieldProblem("metadata.name", (
        f"{kind} {key} already exists and is owned by {who}; {change}"), label))
    return True


def _default_traffic(traffic: tuple[TrafficTarget, ...]) -> tuple[TrafficTarget, ...]:
    """Knative's defaults: latestRevision = no revisionName, percent 0, empty = 100% latest."""
    if not traffic:
        return (TrafficTarget(latest_revision=True, percent=100),)
    return tuple(replace(t, latest_revision=(not t.revision_name) if t.latest_revision is None
                         else t.latest_revision, percent=t.percent or 0) for t in traffic)


def _apply_service(w: _Work, svc: Service, now: float) -> None:
    problems = validate_service(svc, w.defaults, w.autoscaler)
    key = svc.key
    if problems or _owner_conflict(w, "Configuration", key, key.name) \
            or _owner_conflict(w, "Route", key, key.name):
        w.problems += problems
        return
    template = replace(svc.template, spec=default_revision_spec(svc.template.spec, w.defaults))
    traffic = _default_traffic(svc.traffic)
    old = w.services.get(key)
    changed = old is None or (old.template, old.traffic) != (template, traffic)
    child_labels = {**svc.metadata.labels, SERVICE_LABEL: key.name}
    config_meta = ObjectMeta(key.name, key.namespace, child_labels, svc.metadata.annotations)
    if not _stamp_configuration(w, config_meta, template, key.name, now, f"Service/{key.name}"):
        return
    route_traffic = tuple(t if t.revision_name else replace(t, configuration_name=key.name)
                          for t in traffic)
    route = Route(ObjectMeta(key.name, key.namespace, child_labels, svc.metadata.annotations),
                  route_traffic, owner_service=key.name)
    _store_route(w, route, now)
    new = Service(_stamp(svc.metadata, old and old.metadata, changed, now), template, traffic)
    w.services[key] = new
    w.changes.append(Change("Service", *_parts(key), _action(old, new)))


def _apply_configuration(w: _Work, cfg: Configuration, now: float) -> None:
    problems = validate_configuration(cfg, w.defaults, w.autoscaler)
    if problems or _owner_conflict(w, "Configuration", cfg.key, ""):
        w.problems += problems
        return
    template = replace(cfg.template, spec=default_revision_spec(cfg.template.spec, w.defaults))
    old = w.configurations.get(cfg.key)
    if _stamp_configuration(w, cfg.metadata, template, "", now, f"Configuration/{cfg.key.name}"):
        w.changes.append(Change("Configuration", *_parts(cfg.key),
                                _action(old, w.configurations[cfg.key])))


def _apply_route(w: _Work, route: Route, now: float) -> None:
    problems = validate_route(route)
    if problems or _owner_conflict(w, "Route", route.key, ""):
        w.problems += problems
        return
    old = w.routes.get(route.key)
    _store_route(w, replace(route, traffic=_default_traffic(route.traffic)), now)
    w.changes.append(Change("Route", *_parts(route.key), _action(old, w.routes[route.key])))


def _store_route(w: _Work, route: Route, now: float) -> None:
    old = w.routes.get(route.key)
    changed = old is None or old.traffic != route.traffic
    w.routes[route.key] = replace(route, metadata=_stamp(route.metadata, old and old.metadata,
                                                         changed, now))


def _stamp_configuration(w: _Work, meta: ObjectMeta, template: RevisionTemplate, owner: str,
                         now: float, label: str) -> bool:
    """Store a Configuration, stamping a revision if its template changed; False on conflict."""
    key = meta.key
    old = w.configurations.get(key)
    if old is not None and old.template == template:
        w.configurations[key] = replace(old, metadata=_stamp(meta, old.metadata, False, now))
        return True
    stamped = _stamp(meta, old and old.metadata, True, now)
    name = template.name or f"{key.name}-{stamped.generation:05d}"
    rev_key = RevisionKey(key.namespace, name)
    fresh = Revision(name, key.namespace, key.name, template.spec, stamped.generation, owner,
                     template.labels, template.annotations, now)
    existing = w.revisions.get(rev_key)
    if existing is not None and (existing.configuration != key.name or (
            existing.spec, existing.labels, existing.annotations)
            != (fresh.spec, fresh.labels, fresh.annotations)):
        whose = "" if existing.configuration == key.name \
            else f" of Configuration {existing.configuration}"
        fix = "give the changed template a new spec.template.metadata.name" if template.name \
            else "set spec.template.metadata.name to a new name"
        w.problems.append(FieldProblem("spec.template.metadata.name", (
            f"revision {name}{whose} already exists with a different template and revisions "
            f"are immutable; {fix}"), label))
        return False
    if existing is None:
        w.revisions[rev_key] = fresh
        w.created.append(rev_key)
        w.changes.append(Change("Revision", *_parts(rev_key), "created"))
    status = old.status if old else ConfigurationStatus()
    w.configurations[key] = Configuration(
        stamped, template, owner, replace(status, latest_created_revision_name=name))
    return True


def mark_revision_ready(state: ServingState, key: RevisionKey, ready: bool | None,
                        reason: str = "", message: str = "") -> ServingState:
    """Record the platform's readiness of a revision (unknown revisions are ignored)."""
    rev = state.revisions.get(key)
    status = RevisionStatus(ready, reason, message)
    if rev is None or rev.status == status:
        return state
    revisions = {**state.revisions, key: replace(rev, status=status)}
    return _settle(replace(state, revisions=revisions))


def delete_service(state: ServingState, namespace: str, name: str) -> ApplyResult:
    """Remove a Service with its Configuration, Route and every revision it made."""
    key = ObjectKey(namespace, name)
    if key not in state.services:
        raise ObjectNotFound(f"service {key} not found")
    revisions = {k: r for k, r in state.revisions.items()
                 if not (k.namespace == namespace and r.configuration == name)}
    gone = tuple(sorted(set(state.revisions) - set(revisions)))
    drop = lambda m: {k: v for k, v in m.items() if k != key}  # noqa: E731
    new = replace(state, services=drop(state.services), configurations=drop(state.configurations),
                  routes=drop(state.routes), route_traffic=drop(state.route_traffic),
                  revisions=revisions)
    changes = (Change("Service", *_parts(key), "deleted"),
               *(Change("Revision", *_parts(k), "deleted") for k in gone))
    return ApplyResult(_settle(new), (), changes, gone)


def update_service(state: ServingState, namespace: str, name: str, *, now: float,
                   env: Mapping[str, str | None] | None = None,
                   traffic: Mapping[str, int] | None = None,
                   tags: Mapping[str, str] | None = None,
                   untags: Iterable[str] | None = None) -> ApplyResult:
    """Edit a Service as `kn service update` does, then apply it like an edited manifest.

    env sets variables of the container (None removes one; a change makes a new
    revision). Then spec.traffic: untags first; then tags (revision name or `@latest`
    to tag: an untagged target of it takes the tag, else one is added at 0%); then
    traffic (revision, `@latest` or tag to percent: tagged targets not named stay at
    0%, untagged ones are dropped). A template change drops a bring-your-own revision
    name, which would otherwise have to change too.
    """
    key = ObjectKey(namespace, name)
    svc = state.services.get(key)
    if svc is None:
        raise ObjectNotFound(f"service {key} not found")
    template = svc.template
    if env:
        c = template.spec.container
        merged = {k: v for k, v in {**c.env_dict(), **env}.items() if v is not None}
        spec = replace(template.spec, containers=(
            replace(c, env=tuple(EnvVar(k, v) for k, v in merged.items())),
            *template.spec.containers[1:]))
        if spec != template.spec:
            template = replace(template, spec=spec, name="")
    targets = list(svc.traffic)
    label = f"Service/{name}"
    own = {r.name for r in state.revisions.values()
           if r.namespace == namespace and r.service == name}
    for tag in untags or ():
        i = _tagged(targets, tag, label)
        targets[i] = replace(targets[i], tag="")
        if not targets[i].percent:
            del targets[i]
    # kn refuses a name that is neither this service's revision nor a tag: stored, a typo
    # would only leave the route not ready.
    problems = [FieldProblem("spec.traffic", f"--tag {ref}={tag}: unknown revision {ref!r}",
                             label) for ref, tag in (tags or {}).items()
                if ref != "@latest" and ref not in own]
    for ref, tag in (tags or {}).items():
        new = _target(ref, 0, tag)
        untagged = [i for i, t in enumerate(targets) if not t.tag and (
            t.revision_name, t.latest_revision) == (new.revision_name, new.latest_revision)]
        if untagged:  # kn tags an existing untagged target in place, keeping its percent
            targets[untagged[0]] = replace(targets[untagged[0]], tag=tag)
        else:
            targets.append(new)
    if traffic is not None:
        kept = [replace(t, percent=0) for t in targets if t.tag]
        for ref, pct in traffic.items():
            hit = [i for i, t in enumerate(kept) if t.tag == ref]
            if hit:
                kept[hit[0]] = replace(kept[hit[0]], percent=pct)
            elif ref == "@latest" or ref in own:
                kept.append(_target(ref, pct, ""))
            else:
                problems.append(FieldProblem("spec.traffic",
                                             f"unknown revision or tag {ref!r}", label))
        targets = kept
    if problems:
        raise ValidationError(problems)
    edited = Service(replace(svc.metadata), template, _merge_untagged(targets))
    return apply(state, [edited], now=now)


def _tagged(targets: list[TrafficTarget], tag: str, label: str) -> int:
    for i, t in enumerate(targets):
        if t.tag == tag:
            return i
    raise ValidationError([FieldProblem("spec.traffic", f"no traffic target has tag {tag!r}",
                                        label)])


def _target(ref: str, percent: int, tag: str) -> TrafficTarget:
    if ref == "@latest":
        return TrafficTarget(tag=tag, latest_revision=True, percent=percent)
    return TrafficTarget(tag=tag, revision_name=ref, latest_revision=False, percent=percent)


def _merge_untagged(targets: list[TrafficTarget]) -> tuple[TrafficTarget, ...]:
    """Sum untagged entries for the same revision (or @latest), as kn does."""
    out: list[TrafficTarget] = []
    for t in targets:
        same = [i for i, o in enumerate(out) if not o.tag and not t.tag
                and (o.revision_name, o.latest_revision) == (t.revision_name, t.latest_revision)]
        if same:
            out[same[0]] = replace(out[same[0]], percent=(out[same[0]].percent or 0) + t.percent)
        else:
            out.append(t)
    return tuple(out)


# ---------------------------------------------------------------- readiness and status


def _settle(state: ServingState) -> ServingState:
    """Advance every latestReady, then keep each route's traffic if it resolved fully."""
    configurations = {k: _advance_latest_ready(state, c) for k, c in state.configurations.items()}
    state = replace(state, configurations=configurations)
    kept = {k: v for k, v in state.route_traffic.items() if k in state.routes}
    for key, route in state.routes.items():
        targets, problem = resolve_route(state, route)
        if problem is None:
            kept[key] = targets
    return replace(state, route_traffic=kept)


def _advance_latest_ready(state: ServingState, cfg: Configuration) -> Configuration:
    """Knative's rule: latestCreated if ready, else the newest ready revision newer than
    the current latestReady; otherwise latestReady stays where it is."""
    ns, status = cfg.metadata.namespace, cfg.status
    created = state.revisions.get(RevisionKey(ns, status.latest_created_revision_name))
    if created is not None and created.status.ready:
        ready_name = created.name
    else:
        current = state.revisions.get(RevisionKey(ns, status.latest_ready_revision_name))
        floor = current.generation if current is not None else 0
        newer = [r for r in state.revisions.values() if r.namespace == ns
                 and r.configuration == cfg.metadata.name and r.status.ready
                 and r.generation > floor]
        ready_name = max(newer, key=lambda r: r.generation).name if newer \
            else (status.latest_ready_revision_name if current is not None else "")
    if ready_name == status.latest_ready_revision_name:
        return cfg
    return replace(cfg, status=replace(status, latest_ready_revision_name=ready_name))


def describe_service(state: ServingState, key: ObjectKey) -> dict[str, Any]:
    """The Knative-shaped Service with its status (what `surge get -o json` prints)."""
    if key not in state.services:
        raise ObjectNotFound(f"service {key} not found")
    return state.services[key].to_knative(service_status(state, key))


# ---------------------------------------------------------------- persistence

SNAPSHOT_VERSION = 1


def state_to_dict(state: ServingState) -> dict[str, Any]:
    """A JSON-safe snapshot of the state; `state_from_dict` rebuilds an equal state.

    Objects are stored as their Knative manifests plus what a manifest does not carry
    (generation, creation time, owner, status); configs as the ConfigMap data applied.
    """
    def meta(m: ObjectMeta) -> dict[str, Any]:
        return {"generation": m.generation, "created": m.creation_timestamp}

    return {
        "version": SNAPSHOT_VERSION,
        "configmaps": [cm.to_knative() for _, cm in sorted(state.configmaps.items())],
        "services": [{"manifest": s.to_knative(), **meta(s.metadata)}
                     for _, s in sorted(state.services.items())],
        "configurations": [{
            "manifest": c.to_knative(), **meta(c.metadata), "owner": c.owner_service,
            "latestCreated": c.status.latest_created_revision_name,
            "latestReady": c.status.latest_ready_revision_name,
        } for _, c in sorted(state.configurations.items())],
        "routes": [{"manifest": r.to_knative(), **meta(r.metadata), "owner": r.owner_service}
                   for _, r in sorted(state.routes.items())],
        "revisions": [{
            "namespace": r.namespace, "name": r.name, "configuration": r.configuration,
            "service": r.service, "generation": r.generation, "created": r.created_at,
            "labels": dict(r.labels), "annotations": dict(r.annotations),
            "spec": r.spec.to_knative(),
            "ready": r.status.ready, "reason": r.status.reason, "message": r.status.message,
        } for _, r in sorted(state.revisions.items())],
        "routeTraffic": [{
            "namespace": k.namespace, "name": k.name,
            "targets": [{"revisionName": t.revision_name, "percent": t.percent, "tag": t.tag,
                         "latestRevision": t.latest_revision,
                         "configurationName": t.configuration_name} for t in targets],
        } for k, targets in sorted(state.route_traffic.items())],
    }


def state_from_dict(d: Mapping[str, Any]) -> ServingState:
    """Rebuild a state from `state_to_dict`'s snapshot; ValueError if it is not one."""
    if d.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {d.get('version')!r} is not {SNAPSHOT_VERSION}")

    def obj(entry: Mapping[str, Any]) -> Any:
        parsed, _ = parse_object(entry["manifest"])
        return replace(parsed, metadata=replace(parsed.metadata, generation=entry["generation"],
                                                creation_timestamp=entry["created"]))

    w = _Work(ServingState())
    for doc in d["configmaps"]:
        cm, _ = parse_object(doc)
        _apply_configmap(w, cm)
    if w.problems:
        raise ValidationError(w.problems)
    for entry in d["services"]:
        svc = obj(entry)
        w.services[svc.key] = svc
    for entry in d["configurations"]:
        cfg = replace(obj(entry), owner_service=entry["owner"], status=ConfigurationStatus(
            entry["latestCreated"], entry["latestReady"]))
        w.configurations[cfg.key] = cfg
    for entry in d["routes"]:
        route = replace(obj(entry), owner_service=entry["owner"])
        w.routes[route.key] = route
    for e in d["revisions"]:
        rev = Revision(e["name"], e["namespace"], e["configuration"],
                       parse_revision_spec(e["spec"]), e["generation"], e["service"],
                       e["labels"], e["annotations"], e["created"],
                       RevisionStatus(e["ready"], e["reason"], e["message"]))
        w.revisions[rev.key] = rev
    for e in d["routeTraffic"]:
        w.route_traffic[ObjectKey(e["namespace"], e["name"])] = tuple(
            ResolvedTarget(t["revisionName"], t["percent"], t["tag"], t["latestRevision"],
                           t["configurationName"]) for t in e["targets"])
    return w.freeze()
