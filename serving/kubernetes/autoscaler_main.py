"""`surge autoscaler` on Kubernetes: the local stack's Autoscaling glue over the cluster.

Theory of operation. The decisions are the local stack's, unchanged: `Autoscaling`
(serving/autoscaling.py) runs the Multiscaler and `apply_decision` per revision. Only
its two outlets differ, both implemented here over the API:

- the *platform* is `DeploymentScaler`: `scale(key, n)` records the wanted replicas and
  a worker merge-patches `deployments/<rev>-deployment/scale` until the Deployment
  informer shows `spec.replicas == n` (level-triggered: a failed patch is retried with
  back-off, a resync re-checks); `pods(key)` are the ready endpoints of the
  `<rev>-private` EndpointSlices, each stamped with the Clock time it was first seen
  ready (EndpointSlices carry no start time; the scraper only needs the age);
- the *endpoints sink* is `ModePublisher`: the activator reads pods from the same
  slices itself, so only the mode travels, as the annotation
  `autoscaling.surge.dev/mode` on `<rev>-private` (endpoints.py), patched when it
  changes.

A revision is watched once both it and its Deployment exist, starting from the
Deployment's replicas (a restarted autoscaler takes over without a jolt). Reachability
follows Knative's KPA: a revision labelled `serving.knative.dev/routingState: reserve`
is unreachable (min-scale and initial-scale ignored), any other is reachable.
`config-autoscaler` in the system namespace is hot-reloaded: parse, then swap and
re-plan every revision; a bad one is rejected, the old one stays in force, and a
Warning Event on the ConfigMap names each bad key and why. The StatServer takes the
activators' pushed stats on `--stats-port`.

Worked example: Deployment hello-00001-deployment at 1 replica, one ready endpoint
10.0.0.5; the scraped queue-proxy reports concurrency 3 with target 1 (cc 1, 100%
utilization) -> the decider wants 3 -> `scale(hello-00001, 3)` -> PATCH
.../deployments/hello-00001-deployment/scale {"spec": {"replicas": 3}}.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from prometheus_client import CollectorRegistry

from autoscaler import AutoscalerConfig, AutoscalerMetrics, PodScraper, StatServer
from dataplane import Clock, Mode, MonotonicClock, RevisionEndpoints, RevisionKey
from serving.autoscaling import Autoscaling
from serving.configmaps import AUTOSCALER_CONFIG, SYSTEM_NAMESPACE, parse_autoscaler_configmap
from serving.platform import PodInfo, PodPhase, PodTemplate
from serving.reconciler import RevisionPlan, plan_revision
from serving.validation import ValidationError

from .children import revision_model
from .client import CONFIGMAP, DEPLOYMENT, ENDPOINTSLICE, REVISION, SERVICE, Api, ApiError, \
    load_api
from .controller import KindSource, rfc3339_now
from .deployment import QUEUE_ADMIN_PORT, QUEUE_METRICS_PORT
from .endpoints import mode_annotation, revision_of_slice, slice_pods
from .informer import Informer, WorkQueue, backoff_s, start_synced
from .metrics_server import DEFAULT_METRICS_PORT, MetricsServer
from .names import ROUTING_STATE_LABEL, deployment_name, private_service_name

__all__ = ["DEFAULT_STATS_PORT", "DeploymentScaler", "KubernetesAutoscaler",
           "ModePublisher", "run_autoscaler"]

_log = logging.getLogger(__name__)

DEFAULT_STATS_PORT = 8080  # Knative's stat server port


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


class DeploymentScaler:
    """The Platform `Autoscaling` drives: scales Deployments, reads pods from EndpointSlices."""

    runs_images = True

    def __init__(self, clock: Clock, deployments: Informer, queue: WorkQueue) -> None:
        self._clock = clock
        self._deployments = deployments
        self._queue = queue
        self.wanted: dict[RevisionKey, int] = {}
        self._pods: dict[RevisionKey, tuple[PodInfo, ...]] = {}
        self._first_ready: dict[tuple[RevisionKey, str], float] = {}

    async def ensure(self, key: RevisionKey, template: PodTemplate) -> None:
        """Nothing to do: the controller made the Deployment."""

    async def scale(self, key: RevisionKey, n: int) -> None:
        """Aim the Deployment at `n` replicas (patched by the worker, retried until true)."""
        self.wanted[key] = n
        self._queue.add(("scale", key))

    async def delete(self, key: RevisionKey) -> None:
        """Forget the revision: the garbage collector deletes its Deployment with it."""
        self.wanted.pop(key, None)
        self._pods.pop(key, None)
        self._first_ready = {k: v for k, v in self._first_ready.items() if k[0] != key}

    def pods(self, key: RevisionKey) -> tuple[PodInfo, ...]:
        """The revision's ready pods as its EndpointSlices list them."""
        return self._pods.get(key, ())

    def current_replicas(self, key: RevisionKey) -> int | None:
        """The Deployment's spec.replicas, None when there is no Deployment (yet)."""
        dep = self._deployments.get(key.namespace, deployment_name(key.name))
        if dep is None:
            return None
        return int((dep.get("spec") or {}).get("replicas", 1))

    def set_slices(self, key: RevisionKey, slices: list[dict[str, Any]]) -> bool:
        """New slices of a revision; True when its pods changed."""
        now = self._clock.now()
        pods = []
        for p in slice_pods(slices):
            started = self._first_ready.setdefault((key, str(p.address)), now)
            pods.append(PodInfo(
                name=p.pod_name or str(p.address), revision=key, phase=PodPhase.RUNNING,
                ready=True, address=p.address, admin_port=QUEUE_ADMIN_PORT,
                metrics_port=QUEUE_METRICS_PORT, user_port=0, app_pid=None,
                queue_proxy_pid=None, started_at=started, restarts=0, last_exit=None,
                log_path="", queue_proxy_log_path="", ready_since=started))
        live = {str(p.address) for p in pods}
        self._first_ready = {k: v for k, v in self._first_ready.items()
                             if k[0] != key or k[1] in live}
        new = tuple(pods)
        changed = new != self._pods.get(key, ())
        self._pods[key] = new
        return changed


class ModePublisher:
    """The EndpointsSink `Autoscaling` drives: publishes each revision's mode (not its pods)."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue
        self.modes: dict[RevisionKey, Mode] = {}
        self.published: dict[RevisionKey, Mode] = {}

    def set_revision(self, endpoints: RevisionEndpoints) -> None:
        """Publish the revision's mode if it changed."""
        self.modes[endpoints.key] = endpoints.mode
        if self.published.get(endpoints.key) is not endpoints.mode:
            self._queue.add(("mode", endpoints.key))

    def remove_revision(self, key: RevisionKey) -> None:
        """Stop publishing for a revision."""
        self.modes.pop(key, None)
        self.published.pop(key, None)


class KubernetesAutoscaler:
    """Informers + Autoscaling + StatServer: the autoscaler daemon's parts, wired."""

    def __init__(self, api: Api, session: aiohttp.ClientSession, *, clock: Clock,
                 system_namespace: str = SYSTEM_NAMESPACE, resync_s: float = 600.0,
                 tick_interval_s: float | None = None) -> None:
        self._api = api
        self._clock = clock
        self._system_namespace = system_namespace
        self.config = AutoscalerConfig()
        self.queue = WorkQueue()
        self._failures: dict[Any, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

        def informer(kind, handler, ns=None) -> Informer:
            return Informer(KindSource(api, kind, ns), handler, clock=clock,
                            resync_s=resync_s, name=kind.kind)
        self.revisions = informer(REVISION, self._on_revision)
        self.deployments = informer(DEPLOYMENT, self._on_deployment)
        self.slices = informer(ENDPOINTSLICE, self._on_slice)
        self.configmaps = informer(CONFIGMAP, self._on_configmap, system_namespace)
        self.scaler = DeploymentScaler(clock, self.deployments, self.queue)
        self.modes = ModePublisher(self.queue)
        self.autoscaling = Autoscaling(clock=clock, platform=self.scaler,  # type: ignore[arg-type]
                                       endpoints=self.modes, scraper=PodScraper(session),
                                       tick_interval_s=tick_interval_s)
        self.stat_server = StatServer(self.autoscaling.multiscaler.ingest, clock=clock)
        self.metrics = CollectorRegistry()
        AutoscalerMetrics(self.autoscaling.multiscaler, self.metrics)
        self.metrics_server = MetricsServer(self.metrics)
        self._watched: set[RevisionKey] = set()
        self._plans: dict[RevisionKey, RevisionPlan] = {}
        self._synced = False

    async def run(self, *, host: str = "0.0.0.0", stats_port: int = DEFAULT_STATS_PORT,
                  sock=None, metrics_port: int | None = None) -> None:
        """Serve stats (and /metrics on `metrics_port`), watch the cluster and scale
        until cancelled."""
        await self.stat_server.start(host=host, port=stats_port, sock=sock)
        try:
            if metrics_port is not None:
                await self.metrics_server.start(host, metrics_port)
            async with asyncio.TaskGroup() as tg:
                await start_synced(tg, (self.configmaps, self.deployments, self.slices,
                                        self.revisions))
                self._synced = True
                for rev in self.revisions.items():
                    self.queue.add(("revision", _key(rev)))
                tg.create_task(self.autoscaling.run())
                tg.create_task(self._worker())
        finally:
            await self.metrics_server.close()
            await self.stat_server.close()

    # -------------------------------------------------------------- events (sync)

    def _on_revision(self, type_: str, obj: dict[str, Any]) -> None:
        self.queue.add(("revision", _key(obj)))

    def _on_deployment(self, type_: str, obj: dict[str, Any]) -> None:
        name = _meta(obj).get("name", "")
        if name.endswith("-deployment"):
            key = RevisionKey(_meta(obj).get("namespace", ""), name[:-len("-deployment")])
            self.queue.add(("revision", key))
            if key in self.scaler.wanted:
                self.queue.add(("scale", key))

    def _on_slice(self, type_: str, obj: dict[str, Any]) -> None:
        key = revision_of_slice(obj)
        if key is None:
            return
        slices = [s for s in self.slices.items() if revision_of_slice(s) == key]
        if self.scaler.set_slices(key, slices):
            self.autoscaling.pods_changed(key, self.scaler.pods(key))

    def _on_configmap(self, type_: str, obj: dict[str, Any]) -> None:
        if _meta(obj).get("name") != AUTOSCALER_CONFIG:
            return
        data = {} if type_ == "DELETED" else (obj.get("data") or {})
        try:
            config = parse_autoscaler_configmap(data)
        except (ValueError, ValidationError) as exc:
            # Parse, validate, then swap: the config in force stays until a good one.
            _log.error("%s rejected, keeping the previous one: %s", AUTOSCALER_CONFIG, exc)
            if type_ != "SYNC":
                self._spawn(self._warn(obj, "InvalidConfig",
                                       f"{AUTOSCALER_CONFIG} rejected, the previous one stays "
                                       f"in force: {exc}"))
            return
        if config != self.config:
            self.config = config
            for rev in self.revisions.items():
                self.queue.add(("revision", _key(rev)))

    # --------------------------------------------------------------- the worker

    async def _worker(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await {"revision": self._sync_revision, "scale": self._sync_scale,
                       "mode": self._sync_mode}[item[0]](item[1])
                self._failures.pop(item, None)
            except (ApiError, OSError, asyncio.TimeoutError) as exc:
                n = self._failures[item] = self._failures.get(item, 0) + 1
                _log.warning("%s %s failed (%s); retrying in %.1fs", *item, exc, backoff_s(n))
                asyncio.get_running_loop().call_later(backoff_s(n), self.queue.add, item)
            except Exception:  # a bug must not stop scaling the other revisions
                _log.exception("%s %s crashed", *item)
            finally:
                self.queue.done(item)

    def _plan(self, rev: Mapping[str, Any]) -> RevisionPlan | None:
        try:
            model = revision_model(rev)
        except ValidationError as exc:
            _log.warning("revision %s not scaled: %s", _key(rev), exc)
            return None
        labels = _meta(rev).get("labels") or {}
        return plan_revision(model, self.config,
                             reachable=labels.get(ROUTING_STATE_LABEL) != "reserve")

    async def _sync_revision(self, key: RevisionKey) -> None:
        rev = self.revisions.get(key.namespace, key.name)
        if rev is None or _meta(rev).get("deletionTimestamp"):
            if key in self._watched:
                self._watched.discard(key)
                self._plans.pop(key, None)
                await self.autoscaling.forget(key)
            return
        plan = self._plan(rev)
        current = self.scaler.current_replicas(key)
        if plan is None or current is None:
            return  # no Deployment yet: its event brings the revision back
        if key in self._watched:
            # Deployment status events land here too: only a new plan needs a pass.
            if self._plans.get(key) != plan:
                self._plans[key] = plan
                self.autoscaling.update(plan)
            return
        self._plans[key] = plan
        self._watched.add(key)
        slices = [s for s in self.slices.items() if revision_of_slice(s) == key]
        self.scaler.set_slices(key, slices)
        await self.autoscaling.watch(plan, current_replicas=current)

    async def _sync_scale(self, key: RevisionKey) -> None:
        wanted = self.scaler.wanted.get(key)
        if wanted is None or wanted == self.scaler.current_replicas(key):
            return
        await self._api.patch(DEPLOYMENT, key.namespace, deployment_name(key.name),
                              {"spec": {"replicas": wanted}}, subresource="scale")
        _log.info("scaled %s to %d", key, wanted)

    async def _sync_mode(self, key: RevisionKey) -> None:
        mode = self.modes.modes.get(key)
        if mode is None or self.modes.published.get(key) is mode:
            return
        try:
            await self._api.patch(SERVICE, key.namespace, private_service_name(key.name),
                                  mode_annotation(mode))
        except ApiError as exc:
            if exc.status != 404:
                raise
            return  # the controller has not made it yet; its revision event re-publishes
        self.modes.published[key] = mode

    # ---------------------------------------------------------------- helpers

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("autoscaler task failed", exc_info=task.exception())

    async def _warn(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event on `obj` (kubectl describe shows it)."""
        meta, now = _meta(obj), rfc3339_now()
        await self._api.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid", "")},
            "type": "Warning", "reason": reason, "message": message[:1000],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": "surge-autoscaler"}})


def _key(obj: Mapping[str, Any]) -> RevisionKey:
    meta = _meta(obj)
    return RevisionKey(meta.get("namespace", ""), meta.get("name", ""))


async def run_autoscaler(kubeconfig: str | None, stats_port: int = DEFAULT_STATS_PORT,
                         metrics_port: int | None = DEFAULT_METRICS_PORT) -> None:
    """`surge autoscaler`: scale revisions until cancelled (SIGTERM/SIGINT cancel it)."""
    api = await load_api(kubeconfig)
    try:
        async with aiohttp.ClientSession() as session:
            await KubernetesAutoscaler(api, session, clock=MonotonicClock()).run(
                stats_port=stats_port, metrics_port=metrics_port)
    finally:
        await api.close()
