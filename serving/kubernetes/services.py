"""The Kubernetes Services Surge makes: per revision, and per route (pure).

What Surge needs differs from Knative's, because the activator is the ingress and reads
Route status itself (no Ingress objects, no mesh), then sends requests either through
its own queue (proxy mode) or straight to pod IPs (serve mode):

- `<rev>-private` (per revision): selects the revision's pods by revision UID. Nothing
  sends traffic to its virtual IP; it exists for its EndpointSlices, which list the
  ready pod IPs with named ports: `http` -> the queue-proxy's 8012 (the activator sends
  there), `http-autometric` -> 9090 (the autoscaler scrapes it), `http-usermetric` ->
  9091, `http-queueadm` -> 8022. It is headless (clusterIP None): with no virtual IP,
  kube-proxy programs nothing on every node at each scale change, while EndpointSlices
  are kept exactly as for a ClusterIP Service. Knative's public `<rev>` Service, whose
  endpoints the SKS flips between activator and pods, is not needed: the flip happens
  inside Surge's activator.
- `<route>` and `<tag>-<route>` (per route): ExternalName Services naming the activator
  Service, so that the route's cluster-local address (`http://hello.default.svc.
  cluster.local`, Route status `address.url`) and its tag hosts resolve inside the
  cluster, as Knative's placeholder Services do. The activator maps those Hosts to the
  route like the external ones.

Worked example: revision hello-00001 (uid r1) -> Service hello-00001-private, selector
{serving.knative.dev/revisionUID: r1}, ports http 80->8012, http-autometric 9090,
http-usermetric 9091, http-queueadm 8022. Route hello with tag candidate -> ExternalName
Services hello and candidate-hello -> activator-service.knative-serving.svc.cluster.local.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from serving.configmaps import SYSTEM_NAMESPACE
from serving.model import ROUTE_LABEL

from .deployment import (
    EXCLUDED_LABELS,
    QUEUE_ADMIN_PORT,
    QUEUE_METRICS_PORT,
    QUEUE_SERVING_PORT,
    QUEUE_STATS_PORT,
)
from .names import (
    GROUP,
    REVISION_LABEL,
    REVISION_UID_LABEL,
    SERVICE_TYPE_LABEL,
    owner_reference,
    private_service_name,
    tag_service_name,
)

ACTIVATOR_SERVICE = "activator-service"
HTTP_PORT_NAME = "http"
# Port names of the private Service (and so of its EndpointSlices), Knative's.
PRIVATE_PORTS = (
    (HTTP_PORT_NAME, 80, QUEUE_SERVING_PORT),
    ("http-autometric", QUEUE_STATS_PORT, QUEUE_STATS_PORT),
    ("http-usermetric", QUEUE_METRICS_PORT, QUEUE_METRICS_PORT),
    ("http-queueadm", QUEUE_ADMIN_PORT, QUEUE_ADMIN_PORT),
)


def make_private_service(revision: Mapping[str, Any]) -> dict[str, Any]:
    """`<rev>-private`: the headless Service whose EndpointSlices list the revision's pods."""
    meta = revision.get("metadata") or {}
    name, uid = meta["name"], meta.get("uid", "")
    # Not the routing labels: they change with traffic, and each change would rewrite
    # this Service under the autoscaler's mode annotation (a 409 for one of the two).
    labels = {**{k: v for k, v in (meta.get("labels") or {}).items() if k not in EXCLUDED_LABELS},
              REVISION_LABEL: name, REVISION_UID_LABEL: uid, SERVICE_TYPE_LABEL: "Private"}
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": private_service_name(name),
                     "namespace": meta.get("namespace", "default"), "labels": labels,
                     "ownerReferences": [owner_reference(f"{GROUP}/v1", "Revision", name, uid)]},
        "spec": {
            "clusterIP": "None",
            "selector": {REVISION_UID_LABEL: uid},
            "ports": [{"name": n, "protocol": "TCP", "port": port, "targetPort": target}
                      for n, port, target in PRIVATE_PORTS],
        },
    }


def activator_host(system_namespace: str = SYSTEM_NAMESPACE,
                   cluster_domain: str = "cluster.local") -> str:
    """The activator Service's in-cluster DNS name."""
    return f"{ACTIVATOR_SERVICE}.{system_namespace}.svc.{cluster_domain}"


def make_route_services(route: Mapping[str, Any], tags: Iterable[str], *,
                        system_namespace: str = SYSTEM_NAMESPACE,
                        cluster_domain: str = "cluster.local") -> list[dict[str, Any]]:
    """The ExternalName Services of a route's host and of each of its `tags`' hosts."""
    meta = route.get("metadata") or {}
    name, uid = meta["name"], meta.get("uid", "")
    target = activator_host(system_namespace, cluster_domain)
    out = []
    for svc_name in [name, *(tag_service_name(name, t) for t in sorted(set(tags)) if t)]:
        out.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc_name, "namespace": meta.get("namespace", "default"),
                         "labels": {ROUTE_LABEL: name},
                         "ownerReferences": [owner_reference(f"{GROUP}/v1", "Route", name, uid)]},
            "spec": {"type": "ExternalName", "externalName": target,
                     "ports": [{"name": HTTP_PORT_NAME, "protocol": "TCP", "port": 80}]},
        })
    return out
