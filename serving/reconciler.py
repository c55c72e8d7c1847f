"""The pure half of the local stack's reconciler: desired state in, what to run out.

Theory of operation. Every change to the desired state (apply, update, delete, a
revision turning ready, a new config-autoscaler) is followed by one reconcile pass. This
module computes, with no I/O, what that pass must make true:

* per revision a `RevisionPlan`: the `PodTemplate` the platform runs, its resolved
  `ScalingSpec`, windows, aggregation algorithm, min/max scale and the `ScaleSettings`
  that `apply_decision` needs, all through autoscaler's `resolve_*` (annotation over
  ConfigMap over default), and the activator's per-revision limits;
* the activator's `HostRoute`s, from `routing_table(state)`;
* which revisions are new, changed or gone since the last pass (`diff_plans`).

Reachability (reference 1.4): a revision is reachable while a route sends it traffic (a
percent split or a tag), or while it is the newest revision of its configuration and
has not failed (Knative's `pending` routing state, which the KPA treats as reachable).
Anything else is Knative's `reserve`: min-scale and initial-scale are ignored and it
may drop straight to zero. Such revisions stay (their pods scale away, their history
stays visible) until their service is deleted.

Worked example: hello-00001 serves 100%; apply v2 -> hello-00002 is new and reachable
(pending), hello-00001 still reachable (routed). Once hello-00002 is ready the route
moves to it; hello-00001 is now referenced by nothing, its plan changes to unreachable,
and the autoscaler may take it to zero pods after its stable window and grace period.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from activator import HostRoute as IngressRoute
from autoscaler import (
    AutoscalerConfig,
    ScaleSettings,
    ScalingSpec,
    resolve_aggregation_algorithm,
    resolve_scale_bounds,
    resolve_scale_to_zero_pod_retention,
    resolve_spec,
    resolve_windows,
)
from dataplane import Mode, PodAddress, RevisionEndpoints, RevisionKey

from .model import Revision
from .platform import ImageOnlyError, PodInfo, PodPhase, PodTemplate, require_command
from .routing import routing_table
from .state import ServingState
from .validation import (
    DEFAULT_PROGRESS_DEADLINE_S, PROGRESS_DEADLINE_ANNOTATION, FieldProblem,
    parse_progress_deadline,
)

__all__ = [
    "Plan",
    "PlanDiff",
    "RevisionPlan",
    "command_problems",
    "diff_plans",
    "endpoint_pods",
    "ingress_routes",
    "plan",
    "plan_revision",
    "pod_template",
    "reachable_revisions",
]

_CONTAINER_PATH = "spec.template.spec.containers[0]"


@dataclass(frozen=True, slots=True)
class RevisionPlan:
    """How one revision runs and scales, resolved from its spec, annotations and config."""

    key: RevisionKey
    service: str
    configuration: str
    template: PodTemplate
    reachable: bool
    spec: ScalingSpec
    panic_window_s: float
    algorithm: str
    settings: ScaleSettings
    # A revision none of whose pods got ready this long after its first one started fails.
    progress_deadline_s: float = DEFAULT_PROGRESS_DEADLINE_S

    @property
    def initial_replicas(self) -> int:
        """Pods to start with: initial-scale (at least min-scale) if reachable, else 0."""
        if not self.reachable:
            return 0
        return max(self.spec.initial_scale, self.settings.min_scale)

    def endpoints(self, pods: tuple[PodAddress, ...], mode: Mode) -> RevisionEndpoints:
        """What the activator needs for this revision, with the given pods and mode."""
        t = self.template
        return RevisionEndpoints(self.key, pods, mode, t.container_concurrency, t.timeout_s,
                                 t.response_start_timeout_s, t.idle_timeout_s)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one reconcile pass makes true: revisions to run and the ingress routes."""

    revisions: Mapping[RevisionKey, RevisionPlan]
    routes: tuple[IngressRoute, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "revisions", MappingProxyType(dict(self.revisions)))


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """Revisions to start watching, to update in place, and to stop and forget."""

    added: tuple[RevisionPlan, ...]
    changed: tuple[RevisionPlan, ...]
    removed: tuple[RevisionKey, ...]


def pod_template(rev: Revision) -> PodTemplate:
    """The platform's template for a revision's pods (user port: a free one per pod)."""
    spec, c = rev.spec, rev.spec.container
    probe = c.to_knative().get("readinessProbe")
    return PodTemplate(
        command=c.command, args=c.args, env=MappingProxyType(c.env_dict()),
        working_dir=c.working_dir or None,
        image=c.image or None, user_port=None,
        container_concurrency=spec.container_concurrency or 0,
        timeout_s=float(spec.timeout_seconds or 300),
        # 0 and None both mean "off" for the optional timeouts (config-defaults).
        response_start_timeout_s=float(spec.response_start_timeout_seconds or 0) or None,
        idle_timeout_s=float(spec.idle_timeout_seconds or 0) or None,
        readiness_probe_json=None if probe is None else json.dumps(probe),
        service=rev.service, configuration=rev.configuration,
    )


def command_problems(state: ServingState, keys: tuple[RevisionKey, ...]) -> list[FieldProblem]:
    """A problem for each revision in `keys` with nothing to run locally (image only)."""
    problems = []
    for key in keys:
        rev = state.revisions[key]
        c = rev.spec.container
        try:
            require_command(c.command, c.image or None, _CONTAINER_PATH)
        except ImageOnlyError as exc:
            reason = str(exc).removeprefix(f"{_CONTAINER_PATH}: ")
            owner = f"Service/{rev.service}" if rev.service \
                else f"Configuration/{rev.configuration}"
            problems.append(FieldProblem(_CONTAINER_PATH, reason, owner))
    return problems


def reachable_revisions(state: ServingState) -> frozenset[RevisionKey]:
    """Revisions a route sends traffic or a tag to, plus each configuration's pending one."""
    keys: set[RevisionKey] = set()
    for route in routing_table(state):
        keys.update(k for k, percent in route.splits if percent)
        keys.update(route.tags.values())
    for cfg in state.configurations.values():
        latest = RevisionKey(cfg.metadata.namespace, cfg.status.latest_created_revision_name)
        rev = state.revisions.get(latest)
        if rev is not None and rev.status.ready is not False:
            keys.add(latest)
    return frozenset(keys)


def plan_revision(rev: Revision, config: AutoscalerConfig, *, reachable: bool) -> RevisionPlan:
    """One revision's plan: precedence annotation > config-autoscaler > default."""
    anns = rev.annotations
    cc = rev.spec.container_concurrency or 0
    spec = resolve_spec(config, anns, container_concurrency=cc, reachable=reachable)
    _, panic_window_s = resolve_windows(config, anns)
    min_scale, max_scale = resolve_scale_bounds(config, anns, reachable=reachable)
    retention = resolve_scale_to_zero_pod_retention(config, anns, reachable=reachable)
    try:
        deadline_s = parse_progress_deadline(anns[PROGRESS_DEADLINE_ANNOTATION])
    except (KeyError, ValueError):  # admission rejects a bad one; a stored one gets the default
        deadline_s = DEFAULT_PROGRESS_DEADLINE_S
    # The KPA bounds a stuck activation by the same deadline (Knative's activationTimeout).
    settings = ScaleSettings.from_spec(spec, config, min_scale=min_scale, max_scale=max_scale,
                                       scale_to_zero_pod_retention_period=retention,
                                       progress_deadline=deadline_s)
    return RevisionPlan(rev.key, rev.service, rev.configuration, pod_template(rev), reachable,
                        spec, panic_window_s, resolve_aggregation_algorithm(anns), settings,
                        deadline_s)


def ingress_routes(state: ServingState) -> tuple[IngressRoute, ...]:
    """The activator's routes: each route's host with its splits and tags, each tag host."""
    # A tag host sends everything to its one revision; the tag header means nothing
    # there (Knative's tag-host rules have no header paths), so it carries no tag map.
    return tuple(IngressRoute(r.host, r.splits, {} if r.tag else r.tags)
                 for r in routing_table(state))


def plan(state: ServingState) -> Plan:
    """The whole plan for a state."""
    reachable = reachable_revisions(state)
    revisions = {key: plan_revision(rev, state.autoscaler, reachable=key in reachable)
                 for key, rev in state.revisions.items()}
    return Plan(revisions, ingress_routes(state))


def diff_plans(old: Mapping[RevisionKey, RevisionPlan],
               new: Mapping[RevisionKey, RevisionPlan]) -> PlanDiff:
    """What changed between two passes' revision plans."""
    added = tuple(p for k, p in sorted(new.items()) if k not in old)
    changed = tuple(p for k, p in sorted(new.items()) if k in old and old[k] != p)
    removed = tuple(sorted(k for k in old if k not in new))
    return PlanDiff(added, changed, removed)


def endpoint_pods(pods: tuple[PodInfo, ...]) -> tuple[PodAddress, ...]:
    """The pods the activator may probe and route to: started and not being removed."""
    # Terminating pods leave first (the platform's removal hook relies on it); failed
    # ones have no process to answer until their restart lists them again.
    return tuple(p.address for p in pods if p.phase in (PodPhase.PENDING, PodPhase.RUNNING))
