"""The Kubernetes controller: Services -> Configurations + Routes -> Revisions ->
Deployments and Services, with statuses, as Knative's reconcilers.

Theory of operation. Informers cache every kind the controller reads; any event puts
keys on one WorkQueue: the object's own (kind, namespace, name), its controlling
owner's (a Deployment's event wakes its Revision, a Revision's its Configuration; a
pod's, through its serving.knative.dev/revision label, its Revision),
and, for Revisions and Configurations, every Route of the namespace (a Route's traffic
follows their readiness), for a Route every Revision of the namespace (their
routingState follows its traffic). Workers take a key and reconcile it from the caches alone:

  Service        -> desired [Configuration, Route]      ; status from both
  Configuration  -> desired [Revision of its generation] (immutable, never pruned)
                                                        ; status: latestCreated/Ready
  Revision       -> routingState label from the Routes' status traffic (routing.py),
                    desired [Deployment, <rev>-private] ; status from the Deployment
                    and its pods (image pull errors, crash loops, unschedulable)
  Route          -> status (traffic, URLs) first, then desired ExternalName Services
                    for its host and tag hosts

`reconcile.plan` turns desired + observed into Create/Update/Delete; the status is
written through the status subresource only when it differs (`plan_status`). So the
loop is level-triggered and idempotent: a restarted controller lists, finds every
object already right and writes nothing. A failed call (409 on a stale
resourceVersion, 5xx) re-queues the key after `backoff_s`; the cache event that
follows a successful write re-queues the owner, which then sees the new child.
A bad object (invalid template, a child name owned by someone else) gets Ready False
naming the field and reason, and one Warning Event when that status is first written.
Worked example: `kubectl apply` Service hello -> Configuration hello and Route hello
created -> Revision hello-00001 -> hello-00001-deployment and hello-00001-private;
the Deployment reports a ready replica -> Revision Ready -> Configuration
latestReady hello-00001 -> Route traffic 100% hello-00001, URL
http://hello.default.example.com -> Service Ready with that URL.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from autoscaler import AutoscalerConfig, resolve_initial_scale
from dataplane import Clock, MonotonicClock
from serving.configmaps import (
    AUTOSCALER_CONFIG,
    DEFAULTS_CONFIG,
    DOMAIN_CONFIG,
    SYSTEM_NAMESPACE,
    DefaultsConfig,
    DomainConfig,
    parse_autoscaler_configmap,
    parse_defaults_config,
    parse_domain_config,
)
from serving.model import CONFIGURATION_LABEL, ROUTE_LABEL
from serving.manifests import parse_object
from serving.model import Configuration, Service
from serving.validation import FieldProblem, ValidationError, validate_configuration, \
    validate_service

from .children import latest_revision_name, make_configuration, make_revision, make_route, \
    revision_model, revision_problem
from .client import CONFIGMAP, CONFIGURATION, DEPLOYMENT, KINDS, KSERVICE, POD, REVISION, \
    ROUTE, SERVICE, Api, ApiError, Kind, load_api
from . import podspec
from .deployment import DeploymentConfig, make_deployment, parse_deployment_config
from .informer import Informer, WorkQueue, backoff_s, start_synced
from .names import REVISION_LABEL, private_service_name
from .reconcile import Create, Delete, Plan, Update, UpdateStatus, plan, plan_status
from .routing import with_routes_annotation, with_routing_state
from .services import make_private_service, make_route_services
from .status import configuration_status, failed_status, problems_message, revision_status, \
    route_status, service_status

_log = logging.getLogger(__name__)

DEPLOYMENT_CONFIG = "config-deployment"
_WATCHED = (KSERVICE, CONFIGURATION, REVISION, ROUTE, DEPLOYMENT, SERVICE)
_RECONCILED = {KSERVICE.kind: KSERVICE, CONFIGURATION.kind: CONFIGURATION,
               REVISION.kind: REVISION, ROUTE.kind: ROUTE}


def rfc3339_now() -> str:
    """The wall-clock time as Kubernetes timestamps it (conditions' lastTransitionTime)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KindSource:
    """An informer's ListWatch for one Kind (all namespaces, or one)."""

    def __init__(self, api: Api, kind: Kind, namespace: str | None = None,
                 label_selector: str | None = None) -> None:
        self._api, self._kind, self._ns, self._selector = api, kind, namespace, label_selector

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        """(items, resourceVersion)."""
        return await self._api.list(self._kind, self._ns, label_selector=self._selector)

    def watch(self, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """The watch stream from `resource_version`."""
        return self._api.watch(self._kind, self._ns, resource_version,
                               label_selector=self._selector)


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


class Controller:
    """Reconciles serving.knative.dev objects into Deployments, Services and statuses."""

    def __init__(self, api: Api, *, clock: Clock, namespace: str | None = None,
                 system_namespace: str = SYSTEM_NAMESPACE, workers: int = 4,
                 resync_s: float = 600.0) -> None:
        self._api = api
        self._clock = clock
        self._system_namespace = system_namespace
        self._workers = workers
        self.queue = WorkQueue()
        self._failures: dict[tuple[str, str, str], int] = {}
        self.defaults = DefaultsConfig()
        self.domain = DomainConfig()
        self.deployment_config = DeploymentConfig()
        self.autoscaler_config = AutoscalerConfig()
        self.informers: dict[str, Informer] = {
            f"{k.api_version}/{k.kind}": Informer(
                KindSource(api, k, namespace), self._on_event, clock=clock,
                resync_s=resync_s, name=k.kind) for k in _WATCHED}
        # Only revisions' pods (they carry the revision label), to say why one is not ready.
        self.informers["pods"] = Informer(
            KindSource(api, POD, namespace, label_selector=REVISION_LABEL), self._on_pod,
            clock=clock, resync_s=resync_s, name="Pod")
        self.informers["configmaps"] = Informer(
            KindSource(api, CONFIGMAP, system_namespace), self._on_configmap, clock=clock,
            resync_s=resync_s, name="ConfigMap")
        self.reconciles = 0

    def _cache(self, kind: Kind) -> Informer:
        return self.informers[f"{kind.api_version}/{kind.kind}"]

    async def run(self) -> None:
        """Start the informers, wait for their first lists, then reconcile until cancelled."""
        async with asyncio.TaskGroup() as tg:
            await start_synced(tg, self.informers.values())
            for _ in range(self._workers):
                tg.create_task(self._worker())

    # ------------------------------------------------------------------ events

    def _on_event(self, type_: str, obj: dict[str, Any]) -> None:
        meta = _meta(obj)
        ns = meta.get("namespace", "")
        if obj.get("apiVersion", "").startswith("serving.knative.dev/") \
                and obj.get("kind") in _RECONCILED:
            self.queue.add((obj["kind"], ns, meta.get("name", "")))
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") in _RECONCILED:
                self.queue.add((ref["kind"], ns, ref.get("name", "")))
        kind = obj.get("kind") if obj.get("apiVersion", "").startswith("serving.knative.dev/") \
            else None
        if kind in ("Revision", "Configuration"):
            for route in self._cache(ROUTE).items():
                if _meta(route).get("namespace") == ns:
                    self.queue.add(("Route", ns, _meta(route)["name"]))
        if kind == "Route":
            # A Route's traffic decides its revisions' routingState and its
            # configurations' routes annotation (routing.py).
            for child in (*self._cache(REVISION).items(), *self._cache(CONFIGURATION).items()):
                if _meta(child).get("namespace") == ns:
                    self.queue.add((child["kind"], ns, _meta(child)["name"]))
        route = (meta.get("labels") or {}).get(ROUTE_LABEL)
        if obj.get("kind") == "Service" and obj.get("apiVersion") == "v1" and route:
            self.queue.add(("Route", ns, route))

    def _on_pod(self, type_: str, obj: dict[str, Any]) -> None:
        # A pod's owner is a ReplicaSet; its revision label names the Revision to wake.
        meta = _meta(obj)
        if revision := (meta.get("labels") or {}).get(REVISION_LABEL):
            self.queue.add(("Revision", meta.get("namespace", ""), revision))

    def _on_configmap(self, type_: str, obj: dict[str, Any]) -> None:
        name = _meta(obj).get("name")
        parsers = {DEFAULTS_CONFIG: ("defaults", parse_defaults_config),
                   DOMAIN_CONFIG: ("domain", parse_domain_config),
                   DEPLOYMENT_CONFIG: ("deployment_config", parse_deployment_config),
                   AUTOSCALER_CONFIG: ("autoscaler_config", parse_autoscaler_configmap)}
        if name not in parsers:
            return
        attr, parse = parsers[name]
        data = {} if type_ == "DELETED" else (obj.get("data") or {})
        try:
            value = parse(data)
        except (ValueError, ValidationError) as exc:
            # Parse, validate, then swap: the config in force stays until a good one.
            _log.error("%s rejected, keeping the previous one: %s", name, exc)
            return
        if getattr(self, attr) != value:
            setattr(self, attr, value)
            for kind in _RECONCILED.values():
                for item in self._cache(kind).items():
                    self.queue.add((kind.kind, _meta(item).get("namespace", ""),
                                    _meta(item)["name"]))

    # --------------------------------------------------------------- the loop

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(*key)
                self._failures.pop(key, None)
            except (ApiError, OSError, asyncio.TimeoutError) as exc:
                n = self._failures[key] = self._failures.get(key, 0) + 1
                _log.info("reconcile %s failed (%s); retrying in %.1fs", key, exc, backoff_s(n))
                asyncio.get_running_loop().call_later(backoff_s(n), self.queue.add, key)
            except Exception:  # a bug must not stop the controller; log and count it
                _log.exception("reconcile %s crashed", key)
            finally:
                self.queue.done(key)

    async def reconcile(self, kind: str, namespace: str, name: str) -> None:
        """Make one object's children and status right (nothing if it is gone)."""
        obj = self._cache(_RECONCILED[kind]).get(namespace, name)
        if obj is None or _meta(obj).get("deletionTimestamp"):
            return  # the garbage collector deletes what it owned
        self.reconciles += 1
        await {"Service": self._service, "Configuration": self._configuration,
               "Revision": self._revision, "Route": self._route}[kind](obj)

    async def _execute(self, actions) -> None:
        for action in actions:
            if isinstance(action, Delete):
                _log.info("delete %s %s/%s", action.kind, action.namespace, action.name)
                await self._api.delete(KINDS[(action.api_version, action.kind)],
                                       action.namespace, action.name, uid=action.uid)
                continue
            meta = _meta(action.obj)
            what = (action.obj.get("kind"), meta.get("namespace"), meta.get("name"))
            if isinstance(action, Create):
                _log.info("create %s %s/%s", *what)
                await self._api.create(action.obj)
            elif isinstance(action, Update):
                _log.info("update %s %s/%s", *what)
                await self._api.replace(action.obj)
            elif isinstance(action, UpdateStatus):
                _log.debug("status %s %s/%s", *what)
                await self._api.replace_status(action.obj)

    async def _finish(self, obj: Mapping[str, Any], result: Plan | None,
                      status: dict[str, Any], now: str) -> None:
        """Run the plan, then write `status` (or NotOwned for the first conflict)."""
        if result is not None:
            await self._execute(result.actions)
            if result.conflicts:
                c = result.conflicts[0]
                await self._write_status(obj, failed_status(obj, c.reason, c.message, now),
                                         failed=True)
                return
        await self._write_status(obj, status)

    async def _write_status(self, obj: Mapping[str, Any], status: dict[str, Any], *,
                            failed: bool = False) -> None:
        """Write `status` if it changed; a `failed` one (a bad object) also gets an Event."""
        update = plan_status(obj, status)
        if update is None:
            return
        await self._api.replace_status(update.obj)
        ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), {})
        _log.debug("status %s %s/%s Ready=%s %s", obj.get("kind"), _meta(obj).get("namespace"),
                   _meta(obj).get("name"), ready.get("status"), ready.get("reason", ""))
        if failed:
            ready = next(c for c in status["conditions"] if c.get("type") == "Ready")
            await self._event(obj, ready.get("reason", "Failed"), ready.get("message", ""))

    async def _event(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event on `obj` (kubectl describe shows it)."""
        meta = _meta(obj)
        now = rfc3339_now()
        await self._api.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid", "")},
            "type": "Warning", "reason": reason, "message": message[:1000],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": "surge-controller"}})

    # ----------------------------------------------------------- per kind

    def _problems(self, obj: Mapping[str, Any]) -> list[FieldProblem]:
        """What Knative's admission webhook would reject (Surge has no webhook)."""
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
        extra: list[FieldProblem] = []
        if isinstance(spec, Mapping):
            # The model reads what a local pod honours; the Kubernetes-only fields
            # (podspec.py) are checked on their own and go to the Deployment as written.
            extra = podspec.problems(spec, "spec.template.spec")
            obj = copy.deepcopy(dict(obj))
            obj["spec"]["template"]["spec"] = podspec.model_view(spec)
        try:
            model, _ = parse_object(dict(obj))
        except ValidationError as exc:
            return [*exc.problems, *extra]
        if extra:
            return extra
        if isinstance(model, Service):
            return validate_service(model, self.defaults, self.autoscaler_config)
        if isinstance(model, Configuration):
            return validate_configuration(model, self.defaults, self.autoscaler_config)
        return []

    async def _service(self, svc: dict[str, Any]) -> None:
        meta, now = _meta(svc), rfc3339_now()
        if problems := self._problems(svc):
            await self._write_status(svc, failed_status(
                svc, "InvalidSpec", problems_message(problems), now), failed=True)
            return
        ns, name = meta["namespace"], meta["name"]
        cfg = self._cache(CONFIGURATION).get(ns, name)
        route = self._cache(ROUTE).get(ns, name)
        result = plan([make_configuration(svc), make_route(svc)],
                      [o for o in (cfg, route) if o], owner_uid=meta["uid"])
        await self._finish(svc, result, service_status(svc, cfg, route, now=now), now)

    async def _configuration(self, cfg: dict[str, Any]) -> None:
        meta, now = _meta(cfg), rfc3339_now()
        ns = meta["namespace"]
        revision_configs = {
            _meta(r)["name"]: (_meta(r).get("labels") or {}).get(CONFIGURATION_LABEL, "")
            for r in self._cache(REVISION).items() if _meta(r).get("namespace") == ns}
        annotated = with_routes_annotation(cfg, self._cache(ROUTE).items(), revision_configs)
        if annotated is not None:
            # Metadata only; the status below goes on the result.
            cfg = await self._api.replace(annotated)
            meta = _meta(cfg)
        if problems := self._problems(cfg):
            await self._write_status(cfg, failed_status(
                cfg, "InvalidSpec", problems_message(problems), now), failed=True)
            return
        try:
            desired = make_revision(cfg, defaults=self.defaults)
        except ValidationError as exc:
            await self._write_status(cfg, failed_status(
                cfg, "RevisionFailed", problems_message(exc.problems), now), failed=True)
            return
        existing = self._cache(REVISION).get(ns, _meta(desired)["name"])
        problem = revision_problem(cfg, existing) if existing is not None else None
        if problem is not None:
            await self._write_status(cfg, failed_status(cfg, "RevisionFailed", problem, now), failed=True)
            return
        revisions = [r for r in self._cache(REVISION).items()
                     if _meta(r).get("namespace") == ns
                     and (_meta(r).get("labels") or {}).get(CONFIGURATION_LABEL) == meta["name"]]
        result = plan([desired], [existing] if existing else [], owner_uid=meta["uid"],
                      prune=False, immutable=True)
        status = configuration_status(cfg, revisions, now=now,
                                      latest_created=latest_revision_name(cfg))
        await self._finish(cfg, result, status, now)

    async def _revision(self, rev: dict[str, Any]) -> None:
        meta, now = _meta(rev), rfc3339_now()
        ns, name = meta["namespace"], meta["name"]
        relabelled = with_routing_state(rev, self._cache(ROUTE).items(), now)
        if relabelled is not None:
            # Metadata only (the spec is immutable); the status below goes on the result.
            rev = await self._api.replace(relabelled)
            meta = _meta(rev)
        try:
            model = revision_model(rev)
        except ValidationError as exc:
            await self._write_status(rev, failed_status(
                rev, "InvalidSpec", problems_message(exc.problems), now), failed=True)
            return
        deployment = make_deployment(model, meta["uid"], deployment=self.deployment_config,
                                     autoscaler=self.autoscaler_config, defaults=self.defaults,
                                     system_namespace=self._system_namespace,
                                     spec=rev.get("spec") or {})
        observed_dep = self._cache(DEPLOYMENT).get(ns, _meta(deployment)["name"])
        observed_svc = self._cache(SERVICE).get(ns, private_service_name(name))
        result = plan([deployment, make_private_service(rev)],
                      [o for o in (observed_dep, observed_svc) if o], owner_uid=meta["uid"])
        pods = [p for p in self.informers["pods"].items() if _meta(p).get("namespace") == ns
                and (_meta(p).get("labels") or {}).get(REVISION_LABEL) == name]
        status = revision_status(rev, observed_dep, now=now, pods=pods,
                                 initial_scale=resolve_initial_scale(self.autoscaler_config,
                                                                     model.annotations))
        await self._finish(rev, result, status, now)

    async def _route(self, route: dict[str, Any]) -> None:
        meta, now = _meta(route), rfc3339_now()
        ns, name = meta["namespace"], meta["name"]
        in_ns = [c for c in self._cache(CONFIGURATION).items() if _meta(c).get("namespace") == ns]
        revs = [r for r in self._cache(REVISION).items() if _meta(r).get("namespace") == ns]
        status = route_status(route, in_ns, revs, domain=self.domain, now=now)
        tags = {t.get("tag") for t in (route.get("spec") or {}).get("traffic") or ()
                if t.get("tag")}
        desired = make_route_services(route, tags, system_namespace=self._system_namespace)
        observed = [s for s in self._cache(SERVICE).items() if _meta(s).get("namespace") == ns
                    and (_meta(s).get("labels") or {}).get(ROUTE_LABEL) == name]
        await self._finish(route, plan(desired, observed, owner_uid=meta["uid"]), status, now)


async def run_controller(kubeconfig: str | None, *, namespace: str | None = None) -> None:
    """`surge controller`: reconcile until cancelled (SIGTERM/SIGINT cancel it)."""
    api = await load_api(kubeconfig)
    try:
        await Controller(api, clock=MonotonicClock(), namespace=namespace).run()
    finally:
        await api.close()
