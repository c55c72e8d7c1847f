"""`surge activator` on Kubernetes: the local stack's Activator fed from the cluster.

Theory of operation. The Activator (activator/) is the same object `surge up` runs; here
informers program it instead of the local control plane:

- Revisions, the `<rev>-private` Services and their EndpointSlices -> one
  `RevisionEndpoints` per revision: containerConcurrency and timeouts from the Revision,
  pods from the slices' endpoints (endpoints.slice_pods), the mode from the
  autoscaler's annotation (endpoints.mode_of; Proxy until it says Serve). Any event on
  one of the three recomputes that revision; a deleted Revision is removed.
  The activator probes every listed pod itself before routing to it, so a slice that
  runs ahead of a queue-proxy costs nothing. Knative's probe optimisation: the list
  holds not-ready endpoints too, so a cold start waits for the queue-proxy's answer,
  not for the kubelet's next readiness period (10 s); with an exec readiness probe or
  a startupProbe (endpoints.probe_optimisation) only Ready endpoints are listed. A pod
  the slices move from ready to not ready is reprobed: out of rotation until it passes.
- Routes -> the whole route table, rebuilt from every Route's status (endpoints.
  host_routes) on any Route event. Revisions are programmed before routes at start-up,
  since a route to an unknown revision answers 404.
- Stats -> `WebSocketStatSink`: the activator's per-second reports and cold-start pokes
  are batched into binary `WireStatMessages` frames on one websocket to the autoscaler's
  stat server (Knative's statforwarder); on a failure it reconnects after `backoff_s`
  (0.5 s doubling to 30 s). Stats queued while disconnected are kept up to
  `MAX_PENDING` (oldest dropped first: a stale second is worth less than a fresh one).
  The sink's `reachable` (a websocket is open) and `errors` (attempts failed and
  connections lost) are Knative's `kn_activator_stats_conn_*` metrics.
- Metrics -> Prometheus `GET /metrics` on the metrics port (9090, `http-metrics`):
  the activator's Knative metrics (activator/metrics.py), labelled with the Service and
  Configuration names from the Revision's `serving.knative.dev/service` and
  `/configuration` labels in the informer's cache, and `pod_name` from `POD_NAME`.

Worked example: Route hello status traffic 100% hello-00001; hello-00001-private's slice
has no ready endpoint -> a request for hello.default.example.com is parked and poke
goes to the autoscaler -> it scales to 1 -> the slice lists 10.0.0.5, not ready yet ->
the activator probes it, and once the queue-proxy answers the parked request goes to
10.0.0.5:8012 (with a startupProbe on the revision: once the slice says ready).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Mapping
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from activator import LEGACY_COUNTERS, Activator, ActivatorConfig, StatsConnection
from dataplane import Clock, MonotonicClock, PodAddress, RevisionEndpoints, RevisionKey, \
    Stat, encode_wire_stats
from serving.model import CONFIGURATION_LABEL, SERVICE_LABEL
from serving.reconciler import pod_template
from serving.validation import ValidationError

from .children import revision_model
from .client import ENDPOINTSLICE, REVISION, ROUTE, SERVICE, Api, load_api
from .controller import KindSource
from .endpoints import host_routes, mode_of, probe_optimisation, revision_of_slice, \
    slice_pods
from .informer import Informer, backoff_s, start_synced
from .metrics_server import DEFAULT_METRICS_PORT, MetricsServer
from .names import SERVICE_TYPE_LABEL, private_service_name

__all__ = ["DEFAULT_AUTOSCALER_URL", "DEFAULT_PORT", "KubernetesActivator", "MAX_PENDING",
           "WebSocketStatSink", "run_activator"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_AUTOSCALER_URL = "ws://autoscaler.knative-serving.svc.cluster.local:8080"
MAX_PENDING = 10_000  # ~ 10 s of reports for 1000 revisions


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


class WebSocketStatSink:
    """A StatSink that streams stats to the autoscaler's stat server over a websocket."""

    def __init__(self, url: str, session: aiohttp.ClientSession, *, clock: Clock,
                 max_pending: int = MAX_PENDING) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._pending: deque[tuple[RevisionKey, Stat]] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self.sent = 0
        self.connects = 0
        self.reachable = False  # a websocket to the autoscaler is open now
        self.errors = 0  # connection attempts that failed, and connections lost

    def send(self, key: RevisionKey, stat: Stat) -> None:
        """Queue one stat; the sender flushes it with whatever else is pending."""
        self._pending.append((key, stat))
        self._wake.set()

    async def run(self) -> None:
        """Connect, send batches as stats arrive, reconnect after failures; until cancelled."""
        failures = 0
        while True:
            try:
                async with self._session.ws_connect(self._url, heartbeat=30.0) as ws:
                    self.connects += 1
                    self.reachable = True
                    failures = 0
                    await self._stream(ws)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                _log.warning("stat stream to %s failed: %r", self._url, exc)
            finally:
                self.reachable = False
            # Not reached when cancelled: a shutdown is no connection error.
            self.errors += 1
            failures += 1
            await self._clock.sleep(backoff_s(failures))

    async def _stream(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        closed = asyncio.ensure_future(ws.receive())  # a close frame or error ends the stream
        try:
            while not closed.done():
                if not self._pending:
                    self._wake.clear()
                    wake = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait([wake, closed], return_when=asyncio.FIRST_COMPLETED)
                    wake.cancel()
                    continue
                batch = list(self._pending)
                await ws.send_bytes(encode_wire_stats(batch))
                # Only what was sent leaves the queue: stats added meanwhile stay.
                for _ in batch:
                    self._pending.popleft()
                self.sent += len(batch)
        finally:
            closed.cancel()


class KubernetesActivator:
    """Informers that program an Activator from Routes, Revisions and EndpointSlices;
    its metrics on a Prometheus endpoint."""

    def __init__(self, api: Api, activator: Activator, *, clock: Clock,
                 resync_s: float = 600.0, connection: StatsConnection | None = None) -> None:
        self.activator = activator
        self.metrics = CollectorRegistry()
        activator.metrics_collector(self.metrics, names=self.revision_names,
                                    connection=connection)
        self.metrics_server = MetricsServer(self.metrics, LEGACY_COUNTERS)

        def informer(kind, handler, selector=None) -> Informer:
            return Informer(KindSource(api, kind, None, selector), handler, clock=clock,
                            resync_s=resync_s, name=kind.kind)
        self.revisions = informer(REVISION, self._on_revision)
        self.services = informer(SERVICE, self._on_service, f"{SERVICE_TYPE_LABEL}=Private")
        self.slices = informer(ENDPOINTSLICE, self._on_slice)
        self.routes = informer(ROUTE, self._on_route)
        self._synced = False
        self._known: set[RevisionKey] = set()
        # Each programmed revision's endpoints the slices said were ready, last time.
        self._ready: dict[RevisionKey, frozenset[PodAddress]] = {}

    async def run(self, *, host: str = "0.0.0.0", metrics_port: int | None = None) -> None:
        """Watch until cancelled (revisions are programmed before the first routes);
        serve /metrics on host:`metrics_port` meanwhile, unless it is None."""
        try:
            if metrics_port is not None:
                await self.metrics_server.start(host, metrics_port)
            async with asyncio.TaskGroup() as tg:
                await start_synced(tg, (self.revisions, self.services, self.slices, self.routes))
                self._synced = True
                for rev in self.revisions.items():
                    self._program(RevisionKey(_meta(rev)["namespace"], _meta(rev)["name"]))
                self._program_routes()
        finally:
            await self.metrics_server.close()

    def revision_names(self, key: RevisionKey) -> tuple[str, str]:
        """The revision's Service and Configuration names from its labels ("" if absent)."""
        labels = _meta(self.revisions.get(key.namespace, key.name)).get("labels") or {}
        return labels.get(SERVICE_LABEL, ""), labels.get(CONFIGURATION_LABEL, "")

    def _on_revision(self, type_: str, obj: dict[str, Any]) -> None:
        self._program(RevisionKey(_meta(obj).get("namespace", ""), _meta(obj).get("name", "")))

    def _on_service(self, type_: str, obj: dict[str, Any]) -> None:
        name = _meta(obj).get("name", "")
        if name.endswith("-private"):
            self._program(RevisionKey(_meta(obj).get("namespace", ""), name[:-len("-private")]))

    def _on_slice(self, type_: str, obj: dict[str, Any]) -> None:
        if (key := revision_of_slice(obj)) is not None:
            self._program(key)

    def _on_route(self, type_: str, obj: dict[str, Any]) -> None:
        self._program_routes()

    def _program(self, key: RevisionKey) -> None:
        """Set (or remove) one revision in the activator from the caches."""
        if not self._synced:
            return
        rev = self.revisions.get(key.namespace, key.name)
        if rev is None:
            self._ready.pop(key, None)
            if key in self._known:
                self._known.discard(key)
                self.activator.remove_revision(key)
            return
        try:
            template = pod_template(revision_model(rev))
        except ValidationError as exc:
            _log.warning("revision %s not routed: %s", key, exc)
            return
        slices = [s for s in self.slices.items() if revision_of_slice(s) == key]
        private = self.services.get(key.namespace, private_service_name(key.name))
        pods = slice_pods(slices, include_not_ready=probe_optimisation(rev))
        ready = frozenset(p.address for p in pods if p.ready)
        was_ready, self._ready[key] = self._ready.get(key, frozenset()), ready
        self._known.add(key)
        self.activator.set_revision(RevisionEndpoints(
            key, tuple(dict.fromkeys(p.address for p in pods)), mode_of(private),
            template.container_concurrency, template.timeout_s,
            template.response_start_timeout_s, template.idle_timeout_s))
        # Knative reprobes a pod that left the ready set but is still listed: the kubelet
        # saw its readiness fail, and a probe that passed before proves nothing now.
        for address in sorted(({p.address for p in pods} - ready) & was_ready):
            self.activator.reprobe(key, address)

    def _program_routes(self) -> None:
        if not self._synced:
            return
        routes = []
        for route in self.routes.items():
            try:
                routes.extend(host_routes(route))
            except ValueError as exc:  # a malformed status: that route only is left out
                _log.warning("route %s/%s not served: %s", _meta(route).get("namespace"),
                             _meta(route).get("name"), exc)
        # Two Routes claiming one host: the first wins, as the local route table needs
        # unique hosts (the controller's names make that a user's own conflict).
        unique = {}
        for r in routes:
            unique.setdefault(r.host, r)
        self.activator.set_routes(unique.values())


async def run_activator(kubeconfig: str | None, port: int = DEFAULT_PORT,
                        autoscaler_url: str = DEFAULT_AUTOSCALER_URL, *,
                        host: str = "0.0.0.0",
                        metrics_port: int | None = DEFAULT_METRICS_PORT) -> None:
    """`surge activator`: serve the ingress (and /metrics on `metrics_port` unless None)
    until cancelled (SIGTERM/SIGINT cancel it)."""
    api = await load_api(kubeconfig)
    clock = MonotonicClock()
    # Knative's activator names itself by its pod (the downward API's POD_NAME in
    # config/): in its stats and in the metrics' pod_name label.
    config = ActivatorConfig(pod_name=os.environ.get("POD_NAME") or "activator")
    try:
        async with aiohttp.ClientSession() as session:
            sink = WebSocketStatSink(autoscaler_url, session, clock=clock)
            activator = Activator(clock, sink, config=config)
            kube = KubernetesActivator(api, activator, clock=clock, connection=sink)
            await activator.start(host, port)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(sink.run())
                    tg.create_task(kube.run(host=host, metrics_port=metrics_port))
            finally:
                await activator.aclose()
    finally:
        await api.close()
