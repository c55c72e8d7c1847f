"""What the autoscaler and activator read off the cluster, as pure functions.

Both daemons watch the same objects and need the same readings of them:

- a revision's pods: the EndpointSlices of its `<rev>-private` Service (label
  `kubernetes.io/service-name`), each endpoint an address list plus conditions. An
  endpoint is ready when `conditions.ready` is not false (the API says an unset ready
  means ready); a terminating one is never used. The autoscaler counts ready endpoints
  only; the activator also takes the not-ready ones (Knative watches both), probes them
  itself and may route to one before the kubelet marks it Ready. Ports come from the
  slice's named ports (`http` -> the queue-proxy's serving port, `http-autometric` ->
  its stats port), falling back to Knative's 8012 and 9090 when a slice names none.
  E.g. endpoints 10.0.0.1 (ready), 10.0.0.2 (ready false), 10.0.0.3 (terminating) ->
  the autoscaler's pods are [.1]; the activator's (optimisation on, below) are [.1
  ready, .2 not ready].
- whether the activator may do that (Knative's probe optimisation): not when the user's
  readiness probe is `exec` (the queue-proxy cannot run it, so its answer proves less
  than the kubelet's) nor when a container has a `startupProbe` (only the kubelet runs
  it; until it passes the pod must not serve).
- a revision's mode: the autoscaler publishes it as the annotation
  `autoscaling.surge.dev/mode: Proxy|Serve` on `<rev>-private` (Knative's SKS mode,
  which Knative writes into the ServerlessService's spec.mode; Surge has no SKS object,
  and the private Service is the one object both daemons already read). A missing or
  unknown value reads as Proxy, the safe mode: the activator holds requests it cannot
  yet send.
- the activator's routes: a Route's status (never its spec: status traffic is what the
  controller resolved and found ready). Its URL's host, `<route>.<ns>.svc.cluster.local`
  and the shorter in-cluster forms get the percent split (per revision, summed) and the
  tag map; each tag's host sends everything to that tag's revision: its URL's host and
  the in-cluster `<tag>-<route>.<ns>.svc.cluster.local`, `.svc` and `<tag>-<route>.<ns>`
  (Knative's tag template, the placeholder Service the controller makes for it).

Worked example: Route hello in default, status url http://hello.default.example.com,
traffic [{hello-00001, 80}, {hello-00002, 20, tag candidate, url
http://candidate-hello.default.example.com}] -> hosts hello.default.example.com,
hello.default.svc.cluster.local, hello.default.svc, hello.default split 80/20 with
tag candidate -> hello-00002, and candidate-hello.default.example.com,
candidate-hello.default.svc.cluster.local, candidate-hello.default.svc and
candidate-hello.default -> hello-00002.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from activator import HostRoute
from dataplane import Mode, PodAddress, RevisionKey

from .deployment import QUEUE_SERVING_PORT, QUEUE_STATS_PORT
from .names import tag_service_name

__all__ = [
    "MODE_ANNOTATION",
    "SERVICE_NAME_LABEL",
    "SlicePod",
    "host_routes",
    "mode_annotation",
    "mode_of",
    "probe_optimisation",
    "revision_of_slice",
    "slice_pods",
]

MODE_ANNOTATION = "autoscaling.surge.dev/mode"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_PRIVATE_SUFFIX = "-private"
_STATS_PORT_NAME = "http-autometric"
_SERVING_PORT_NAME = "http"
_MODE_VALUES = {Mode.PROXY: "Proxy", Mode.SERVE: "Serve"}


@dataclass(frozen=True, slots=True, order=True)
class SlicePod:
    """An endpoint not terminating: its queue-proxy address (with stats port), pod, readiness."""

    address: PodAddress
    pod_name: str = ""
    ready: bool = True  # as the slice says: the kubelet's readiness, not our probe's


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def revision_of_slice(endpoint_slice: Mapping[str, Any]) -> RevisionKey | None:
    """The revision whose `<rev>-private` Service owns the slice, or None for other slices."""
    meta = _meta(endpoint_slice)
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, "")
    if not service.endswith(_PRIVATE_SUFFIX) or len(service) == len(_PRIVATE_SUFFIX):
        return None
    return RevisionKey(meta.get("namespace", ""), service[:-len(_PRIVATE_SUFFIX)])


def _port(ports: Iterable[Mapping[str, Any]], name: str, default: int) -> int:
    for p in ports:
        if p.get("name") == name and isinstance(p.get("port"), int):
            return p["port"]
    return default


def slice_pods(slices: Iterable[Mapping[str, Any]], *,
               include_not_ready: bool = False) -> tuple[SlicePod, ...]:
    """A revision's endpoints, sorted, de-duplicated: the ready ones, or all not terminating."""
    ready: dict[tuple[PodAddress, str], bool] = {}
    for s in slices:
        ports = s.get("ports") or ()
        port = _port(ports, _SERVING_PORT_NAME, QUEUE_SERVING_PORT)
        stats_port = _port(ports, _STATS_PORT_NAME, QUEUE_STATS_PORT)
        for ep in s.get("endpoints") or ():
            cond = ep.get("conditions") or {}
            is_ready = cond.get("ready") is not False
            if cond.get("terminating") is True or not (is_ready or include_not_ready):
                continue
            pod = (ep.get("targetRef") or {}).get("name", "")
            # A pod has one IP per family; the first is the one kube-proxy would use.
            addresses = ep.get("addresses") or ()
            if addresses:
                key = (PodAddress(addresses[0], port, stats_port), pod)
                # Listed twice (a pod moving between slices): ready if either copy says
                # so, so the ready ones of the full list are exactly the default list.
                ready[key] = ready.get(key, False) or is_ready
    return tuple(sorted(SlicePod(a, pod, r) for (a, pod), r in ready.items()))


def probe_optimisation(revision: Mapping[str, Any]) -> bool:
    """Whether the activator may route to a pod its own probe passed before it is Ready."""
    # Knative's revisionBackendsManager. Surge runs one container, so "the user's
    # container" and "any container" agree; any is the safe reading if that changes.
    containers = ((revision.get("spec") or {}).get("containers")) or ()
    for c in containers:
        if not isinstance(c, Mapping):
            continue
        probe = c.get("readinessProbe")
        if isinstance(probe, Mapping) and probe.get("exec") is not None:
            return False
        if c.get("startupProbe") is not None:
            return False
    return True


def mode_of(private_service: Mapping[str, Any] | None) -> Mode:
    """The mode the autoscaler published on a private Service (Proxy unless it says Serve)."""
    value = (_meta(private_service).get("annotations") or {}).get(MODE_ANNOTATION)
    return Mode.SERVE if value == _MODE_VALUES[Mode.SERVE] else Mode.PROXY


def mode_annotation(mode: Mode) -> dict[str, Any]:
    """The merge patch that publishes `mode` on a private Service."""
    return {"metadata": {"annotations": {MODE_ANNOTATION: _MODE_VALUES[mode]}}}


def _host(url: str | None) -> str:
    return (urlsplit(url).hostname or "") if url else ""


def _in_cluster(service: str, ns: str) -> tuple[str, ...]:
    # What cluster DNS answers for a Service, longest first (search paths give the rest).
    return f"{service}.{ns}.svc.cluster.local", f"{service}.{ns}.svc", f"{service}.{ns}"


def host_routes(route: Mapping[str, Any]) -> tuple[HostRoute, ...]:
    """The activator's HostRoutes for one Route, from its status (none until it has traffic)."""
    meta, status = _meta(route), route.get("status") or {}
    ns, name = meta.get("namespace", "default"), meta.get("name", "")
    percents: dict[RevisionKey, int] = {}
    tags: dict[str, RevisionKey] = {}
    tag_hosts: dict[str, RevisionKey] = {}
    for t in status.get("traffic") or ():
        rev = t.get("revisionName")
        if not rev:
            continue
        key = RevisionKey(ns, rev)
        percents[key] = percents.get(key, 0) + int(t.get("percent") or 0)
        if t.get("tag"):
            tags[t["tag"]] = key
            for host in filter(None, (_host(t.get("url")),
                                      *_in_cluster(tag_service_name(name, t["tag"]), ns))):
                tag_hosts.setdefault(host, key)
    splits = tuple((k, p) for k, p in sorted(percents.items()) if p)
    if sum(p for _, p in splits) != 100:
        return ()  # not routable yet (or a status mid-write): serve nothing rather than guess
    hosts = [h for h in (_host(status.get("url")), *_in_cluster(name, ns)) if h]
    out = [HostRoute(h, splits, tags) for h in dict.fromkeys(hosts)]
    # A tag host sends everything to its revision; no tag header applies there.
    out += [HostRoute(h, ((k, 100),)) for h, k in sorted(tag_hosts.items())]
    return tuple(out)
