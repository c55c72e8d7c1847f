"""The control plane's running half: the admin API's `AdminController` over the stack.

Theory of operation. One `Controller` owns the desired state (`ServingState`, immutable,
replaced whole) and serialises every change to it under one lock:

    parse (manifests) -> validate + apply on a copy (state.apply) -> persist (Store.save,
    in a thread) -> swap the state in -> reconcile (reconciler.plan: ensure/watch new
    revisions, re-plan changed ones, activator routes, forget deleted ones)

A rejected apply raises before the swap, so state, store, platform and activator are
untouched. `apply` returns once the objects are stored and routed: a new service is
routed at once to its first revision (requests wait in the activator for its first
pod); a new revision of a routed service takes traffic once ready, so `apply` waits
(bounded) until each new revision is routed, ready or failed, or will have no pods.

The platform reports pods; the controller turns that into the activator's endpoints
(through Autoscaling), revision readiness in the state (`latestReadyRevisionName` moves
only to a revision that became ready), and one line per event for people, also kept
in the store's event log for `surge describe`. A revision fails when its first pod
crashes (ExitCode) or when no pod of it is ready within its progress deadline
(`serving.knative.dev/progress-deadline`, 600 s by default, counted from its first pod:
ProgressDeadlineExceeded); either way traffic stays on the last ready revision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from activator import Activator
from dataplane import RevisionKey

from .admin import InvalidRequestError, NotFoundError, TagSpec, TrafficSpec
from .autoscaling import Autoscaling
from .configmaps import AUTOSCALER_CONFIG
from .manifests import parse_manifests
from .model import ObjectKey, Revision, ServingObject
from .platform import Platform, PlatformError, PodInfo, PodPhase
from .reconciler import RevisionPlan, command_problems, diff_plans, ingress_routes, plan
from .routing import configuration_conditions, route_status, service_status
from .state import (
    ApplyResult, Change, ObjectNotFound, ServingState, apply, delete_service, describe_service,
    mark_revision_ready, state_to_dict, update_service,
)
from .store import Store
from .validation import FieldProblem, ValidationError

__all__ = ["APPLY_WAIT_S", "Controller", "pod_events", "pod_to_json"]

_log = logging.getLogger(__name__)

# How long apply/update wait for a new revision to be routed, ready or failed before
# returning anyway (the CLI waits 120 s for the answer).
APPLY_WAIT_S = 60.0
_EVENT_LIMIT = 50

Printer = Callable[[str], None]


def pod_to_json(pod: PodInfo, service: str) -> dict[str, Any]:
    """A pod as the admin API lists it (what `surge get pods` prints)."""
    out: dict[str, Any] = {
        "name": pod.name, "namespace": pod.revision.namespace, "revision": pod.revision.name,
        "service": service, "phase": pod.phase.value, "ready": pod.ready,
        "restarts": pod.restarts,
        "ports": {"queue": pod.address.port, "user": pod.user_port,
                  "stats": pod.address.stats_port, "admin": pod.admin_port,
                  "metrics": pod.metrics_port},
        "pids": {"app": pod.app_pid, "queue-proxy": pod.queue_proxy_pid},
        "log": pod.log_path,
    }
    if pod.last_exit:
        out["lastExit"] = pod.last_exit
    if pod.backoff_s is not None:
        out["backoffSeconds"] = pod.backoff_s
    return out


def pod_events(old: Mapping[str, PodInfo], new: Sequence[PodInfo]) -> list[str]:
    """One line per pod change between two snapshots of a revision's pods."""
    lines = []
    for pod in new:
        before = old.get(pod.name)
        if pod.app_pid is not None and (before is None or before.app_pid != pod.app_pid):
            lines.append(f"pod {pod.name} started (app pid {pod.app_pid}, queue-proxy pid "
                         f"{pod.queue_proxy_pid}, port {pod.address.port})")
        if pod.ready and not (before and before.ready):
            lines.append(f"pod {pod.name} ready")
        if pod.phase is PodPhase.TERMINATING and not (before and before.phase is pod.phase):
            lines.append(f"pod {pod.name} stopping (draining)")
        # A crash shows as FAILED first, then FAILED with its back-off: say it once, then.
        crash = (pod.phase, pod.backoff_s, pod.restarts)
        if pod.phase is PodPhase.FAILED and pod.backoff_s is not None and (
                before is None or (before.phase, before.backoff_s, before.restarts) != crash):
            lines.append(f"pod {pod.name} failed: {pod.last_exit}; restarting in "
                         f"{pod.backoff_s:g}s")
    names = {p.name for p in new}
    lines += [f"pod {name} stopped" for name in old if name not in names]
    return lines


def _summary(change: Change) -> dict[str, str]:
    return {"kind": change.kind, "namespace": change.namespace, "name": change.name,
            "action": change.action}


class Controller:
    """Implements serving.admin's AdminController over the running stack."""

    def __init__(self, *, state: ServingState, store: Store, platform: Platform,
                 activator: Activator, autoscaling: Autoscaling, state_dir: Path,
                 printer: Printer = print, wall_clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self._store = store
        self._platform = platform
        self._activator = activator
        self._autoscaling = autoscaling
        self._logs = Path(state_dir) / "logs"
        self._print = printer
        self._wall = wall_clock
        self._lock = asyncio.Lock()
        self._plans: Mapping[RevisionKey, RevisionPlan] = {}
        self._pods: dict[RevisionKey, dict[str, PodInfo]] = {}
        self._changed = asyncio.Event()
        self._events: asyncio.Queue[tuple[str, str, str, float]] = asyncio.Queue()
        self._readiness: dict[RevisionKey, tuple[bool, str, str]] = {}
        self._deadlines: dict[RevisionKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring the loaded state up: ensure every revision, program the routes."""
        async with self._lock:
            await self._reconcile()
        for key in sorted(self.state.services):
            self._service_line(key, "restored")

    async def run(self) -> None:
        """Write events to the store in the background until cancelled."""
        try:
            while True:
                kind, obj, message, at = await self._events.get()
                try:
                    await asyncio.to_thread(self._store.add_event, kind, obj, message, now=at)
                except Exception:  # the edge of the loop: a lost event must not stop the stack
                    _log.exception("could not store the event %r", message)
        finally:
            for key in list(self._deadlines):  # stopping: no revision fails on the way out
                self._cancel_deadline(key)

    def flush_events(self) -> None:
        """Write the events still queued (at shutdown, after the writer task stopped)."""
        while not self._events.empty():
            kind, obj, message, at = self._events.get_nowait()
            try:
                self._store.add_event(kind, obj, message, now=at)
            except Exception:  # shutting down: report, keep flushing the rest
                _log.exception("could not store the event %r", message)

    def event(self, kind: str, obj: str, message: str) -> None:
        """Print one line for people and keep it in the event log (`obj`: kind/ns/name)."""
        at = self._wall()
        self._print(f"{time.strftime('%H:%M:%S', time.localtime(at))} {obj}: {message}")
        self._events.put_nowait((kind, obj, message, at))

    def revision_event(self, kind: str, key: RevisionKey, message: str) -> None:
        """An event about one revision (Autoscaling's `on_event`)."""
        self.event(kind, f"revision/{key}", message)

    # -- AdminController ----------------------------------------------------------------

    async def apply(self, documents: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Parse, validate and apply every document at once; return once routed."""
        objects: list[ServingObject] = []
        warnings: list[str] = []
        problems: list[FieldProblem] = []
        for filename, text in documents:
            try:
                parsed = parse_manifests(text)
            except ValidationError as exc:
                problems += [p if p.object else p.within(filename) for p in exc.problems]
                continue
            objects += parsed.objects
            warnings += parsed.warnings
        if problems:
            raise ValidationError(problems)
        if not objects:
            raise InvalidRequestError("nothing to apply: the files hold no documents")
        async with self._lock:
            result = apply(self.state, objects, now=self._wall())
            await self._commit(result, warnings)
        await self._wait_routed(result.created_revisions)
        return [_summary(c) for c in result.changes]

    async def list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of `kind` in `namespace` (all if None), Knative-shaped."""
        s = self.state
        keep = lambda ns: namespace is None or ns == namespace  # noqa: E731
        if kind == "services":
            return [describe_service(s, k) for k in sorted(s.services) if keep(k.namespace)]
        if kind == "configurations":
            return [c.to_knative(configuration_conditions(s, k))
                    for k, c in sorted(s.configurations.items()) if keep(k.namespace)]
        if kind == "routes":
            return [r.to_knative(route_status(s, k))
                    for k, r in sorted(s.routes.items()) if keep(k.namespace)]
        if kind == "revisions":
            return [self._revision_json(r) for k, r in sorted(s.revisions.items())
                    if keep(k.namespace)]
        if kind == "pods":
            return [pod_to_json(p, r.service) for k, r in sorted(s.revisions.items())
                    if keep(k.namespace) for p in self._platform.pods(k)]
        raise InvalidRequestError(f"unknown kind {kind!r}")

    def _revision_json(self, rev: Revision) -> dict[str, Any]:
        """The Revision with what runs now: Knative's actual/desiredReplicas, and how the
        activator reaches it (`mode` Proxy or Serve, as Knative's ServerlessService says,
        with its healthy pods and requests in flight or waiting)."""
        obj = rev.to_knative()
        status = obj.setdefault("status", {})
        status["actualReplicas"] = sum(1 for p in self._platform.pods(rev.key) if p.ready)
        desired = self._autoscaling.replicas(rev.key)
        if desired is not None:
            status["desiredReplicas"] = desired
        throttler = self._activator.revision_stats(rev.key)
        if throttler is not None:
            status["activator"] = {
                "mode": throttler.mode.value.capitalize(), "pods": throttler.pods,
                "inFlight": throttler.in_flight, "waiting": throttler.waiting}
        return obj

    async def describe_service(self, namespace: str, name: str) -> dict[str, Any]:
        """The service with its revisions (newest first), pods and recent events."""
        s = self.state
        key = ObjectKey(namespace, name)
        if key not in s.services:
            raise NotFoundError("service", namespace, name)
        revisions = self._revisions_of(namespace, name)
        objects = [f"service/{key}"] + [f"revision/{r.key}" for r in revisions]
        events = await asyncio.to_thread(self._store.events, _EVENT_LIMIT, objects)
        return {
            "service": describe_service(s, key),
            "revisions": [self._revision_json(r) for r in revisions],
            "pods": [pod_to_json(p, name) for r in revisions for p in self._platform.pods(r.key)],
            "events": [e.to_dict() for e in events],
        }

    async def update_service(self, namespace: str, name: str, *,
                             env: Mapping[str, str | None], traffic: Sequence[TrafficSpec],
                             tags: Sequence[TagSpec], untags: Sequence[str]) -> dict[str, Any]:
        """`surge service update`: edit the service, apply it, return it once routed."""
        async with self._lock:
            try:
                result = update_service(
                    self.state, namespace, name, now=self._wall(), env=dict(env),
                    traffic={t.target: t.percent for t in traffic} if traffic else None,
                    tags={t.revision: t.tag for t in tags}, untags=list(untags))
            except ObjectNotFound:
                raise NotFoundError("service", namespace, name) from None
            await self._commit(result, [])
        await self._wait_routed(result.created_revisions)
        return describe_service(self.state, ObjectKey(namespace, name))

    async def delete_service(self, namespace: str, name: str) -> dict[str, Any]:
        """Delete a service; returns once its pods are drained and stopped."""
        async with self._lock:
            try:
                result = delete_service(self.state, namespace, name)
            except ObjectNotFound:
                raise NotFoundError("service", namespace, name) from None
            removed = await self._commit(result, [])
        await self._forget(removed)
        return {"kind": "Service", "namespace": namespace, "name": name, "action": "deleted"}

    async def log_paths(self, namespace: str, name: str, revision: str | None = None,
                        container: str = "user-container") -> list[str]:
        """The service's pods' log files (the app's, the queue-proxy's or `all`), past and
        present, oldest first."""
        if ObjectKey(namespace, name) not in self.state.services:
            raise NotFoundError("service", namespace, name)
        names = [r.name for r in self._revisions_of(namespace, name)]
        if revision is not None:
            if revision not in names:
                raise NotFoundError("revision", namespace, revision)
            names = [revision]
        # The platform's naming: `<pod>.log` for the app, `<pod>.queue-proxy.log`, and a
        # pod is `<revision>-<5 characters>`.
        suffixes = {"user-container": [".log"], "queue-proxy": [".queue-proxy.log"],
                    "all": [".log", ".queue-proxy.log"]}[container]
        paths = [p for n in names for suffix in suffixes
                 for p in self._logs.glob(f"{n}-?????{suffix}")]
        return [str(p) for p in sorted(paths, key=lambda p: (p.stat().st_mtime, p.name))]

    # -- the platform's reports ---------------------------------------------------------

    def on_pods(self, key: RevisionKey, pods: tuple[PodInfo, ...]) -> None:
        """The platform's pods listener: endpoints, events, revision readiness."""
        self._autoscaling.pods_changed(key, pods)
        for line in pod_events(self._pods.get(key, {}), pods):
            self.revision_event("pod", key, line)
        self._pods[key] = {p.name: p for p in pods}
        if not pods:
            self._pods.pop(key, None)
        rev = self.state.revisions.get(key)
        if rev is None or rev.status.ready:
            self._cancel_deadline(key)
            return  # once ready, a revision stays ready (scaling to zero is not failing)
        if any(p.ready for p in pods):
            self._cancel_deadline(key)
            self._set_ready(key, (True, "", ""))
        elif rev.status.ready is None:
            failed = [p for p in pods if p.phase is PodPhase.FAILED and p.last_exit]
            if failed:
                message = f"container failed: {failed[0].last_exit}"
                self._set_ready(key, (False, "ExitCode", message))
            elif pods and key not in self._deadlines and key in self._plans:
                # Knative's progress deadline: counted from the first pod, so a revision
                # that starts at zero pods is not failed for waiting for its first request.
                deadline_s = self._plans[key].progress_deadline_s
                self._deadlines[key] = asyncio.get_running_loop().call_later(
                    deadline_s, self._deadline_passed, key, deadline_s)

    def _deadline_passed(self, key: RevisionKey, deadline_s: float) -> None:
        """No pod of the revision got ready within its progress deadline: it failed."""
        self._deadlines.pop(key, None)
        rev = self.state.revisions.get(key)
        if rev is not None and rev.status.ready is None:
            self._set_ready(key, (False, "ProgressDeadlineExceeded",
                                  f"no pod became ready within the progress deadline "
                                  f"({deadline_s:g}s)"))

    def _cancel_deadline(self, key: RevisionKey) -> None:
        timer = self._deadlines.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def before_pod_removal(self, pod: PodInfo) -> None:
        """The platform's removal hook: the pod leaves the activator before it drains."""
        self._autoscaling.pods_changed(pod.revision, self._platform.pods(pod.revision))

    # -- internals ----------------------------------------------------------------------

    def _set_ready(self, key: RevisionKey, verdict: tuple[bool, str, str]) -> None:
        if self._readiness.get(key) == verdict:
            return
        self._readiness[key] = verdict
        task = asyncio.get_running_loop().create_task(self._mark_ready(key, *verdict))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("controller task failed", exc_info=task.exception())

    async def _mark_ready(self, key: RevisionKey, ready: bool, reason: str, message: str) -> None:
        async with self._lock:
            new = mark_revision_ready(self.state, key, ready, reason, message)
            if new is self.state:
                return
            old = self.state
            self.revision_event("revision", key, "ready" if ready else f"failed: {message}")
            removed = await self._commit(ApplyResult(new), [])
            for skey in sorted(new.services):
                was = old.services.get(skey) and service_status(old, skey)
                now_ready = service_status(new, skey)
                if was is None or was.latest_ready_revision_name != \
                        now_ready.latest_ready_revision_name:
                    self._service_line(skey, "ready")
        await self._forget(removed)

    async def _commit(self, result: ApplyResult, warnings: Sequence[str]) -> list[RevisionKey]:
        """Persist and swap in `result.state`, then reconcile; the revisions to forget."""
        problems = [] if self._platform.runs_images else \
            command_problems(result.state, result.created_revisions)
        if problems:
            raise ValidationError(problems)
        snapshot = state_to_dict(result.state)
        await asyncio.to_thread(self._store.save, snapshot)
        old, self.state = self.state, result.state
        self._changed.set()
        for line in (*warnings, *result.warnings):
            self.event("warning", "stack", line)
        for change in result.changes:
            if change.action == "unchanged":
                continue
            obj = f"{change.kind.lower()}/{change.namespace}/{change.name}"
            self.event(change.kind.lower(), obj, change.action)
            if change.kind == "ConfigMap" and change.name == AUTOSCALER_CONFIG:
                data = result.state.configmaps[AUTOSCALER_CONFIG].data
                shown = ", ".join(f"{k}={v}" for k, v in sorted(data.items())
                                  if not k.startswith("_")) or "defaults"
                self.event("config", obj, f"autoscaler settings now {shown}")
        removed = await self._reconcile()
        if old.routes != self.state.routes or old.route_traffic != self.state.route_traffic:
            for key in sorted(self.state.services):
                if old.services.get(key) != self.state.services[key]:
                    self._service_line(key, "routed")
        return removed

    async def _reconcile(self) -> list[RevisionKey]:
        """Make the platform and activator match the state; the revisions now gone."""
        new = plan(self.state)
        diff = diff_plans(self._plans, new.revisions)
        for p in diff.added:
            try:
                await self._autoscaling.watch(p)
            except PlatformError as exc:  # e.g. a revision stored by an older Surge
                self.revision_event("error", p.key, f"cannot run: {exc}")
        for p in diff.changed:
            self._autoscaling.update(p)
        # Revisions are listed in the activator before any route points at them.
        self._activator.set_routes(new.routes)
        self._plans = new.revisions
        return list(diff.removed)

    async def _forget(self, keys: Sequence[RevisionKey]) -> None:
        await asyncio.gather(*(self._autoscaling.forget(k) for k in keys))
        for key in keys:
            self._readiness.pop(key, None)
            self._cancel_deadline(key)

    async def _wait_routed(self, created: Sequence[RevisionKey]) -> None:
        """Until each new revision is routed, ready, failed or without pods (bounded)."""
        def settled(key: RevisionKey) -> bool:
            rev, p = self.state.revisions.get(key), self._plans.get(key)
            routed = any(key == k for r in ingress_routes(self.state) for k, _ in r.splits)
            return (rev is None or p is None or rev.status.ready is not None or routed
                    or p.initial_replicas == 0)
        try:
            async with asyncio.timeout(APPLY_WAIT_S):
                while not all(settled(k) for k in created):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            _log.warning("revisions %s not ready after %.0f s; apply returns anyway",
                         ", ".join(map(str, created)), APPLY_WAIT_S)

    def _revisions_of(self, namespace: str, service: str) -> list[Revision]:
        revs = [r for r in self.state.revisions.values()
                if r.namespace == namespace and r.service == service]
        return sorted(revs, key=lambda r: r.generation, reverse=True)

    def _service_line(self, key: ObjectKey, what: str) -> None:
        st = service_status(self.state, key)
        traffic = ", ".join(f"{t.percent}% {t.revision_name}" + (f" #{t.tag} {t.url}" if t.tag
                                                                 else "")
                            for t in st.traffic) or "no traffic yet"
        self.event("service", f"service/{key}", f"{what} at {st.url} ({traffic})")
