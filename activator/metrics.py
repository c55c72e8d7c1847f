"""The activator's Prometheus metrics: ints bumped per request, families built at scrape time.

Why not prometheus_client metrics directly: every `inc()`/`observe()` takes a lock and
looks labels up; the activator's request path only bumps ints on a per-revision
`RevisionRequests` (one dict lookup by status, a bisect, three adds), and
`ActivatorMetrics`, a custom `Collector`, turns them into metric families when
Prometheus scrapes (the registry is passed in, never prometheus_client's global one).

Families, in Knative's two naming schemes (reference 7.1 and 7.2):

* legacy OpenCensus names (<= v1.18), labelled `namespace_name`, `service_name`,
  `configuration_name`, `revision_name` (`unknown` when empty), `pod_name` and
  `container_name="activator"`:
  - `activator_request_concurrency` (gauge): the per-second average concurrency last
    reported to the autoscaler for the revision (the cold-start poke subtracted);
  - `activator_request_count` (counter) and `activator_request_latencies` (histogram,
    ms, arrival to the end of the response, queue time included), both with
    `response_code` and `response_code_class` (`2xx`);
* current OpenTelemetry instruments as Prometheus exports them (dots become
  underscores, counters gain `_total`):
  - `kn_revision_request_concurrency` (gauge; `k8s_namespace_name`, `kn_service_name`,
    `kn_configuration_name`, `kn_revision_name`): the same value as the legacy gauge;
  - `kn_revision_request_queued` / `kn_revision_request_active` (up-down counters, so
    gauges; `k8s_namespace_name`, `kn_revision_name`): requests parked in the
    throttler for a pod / holding a pod now;
  - `kn_activator_stats_conn_reachable` (1/0) and `kn_activator_stats_conn_errors_total`,
    labelled `peer="autoscaler"`: only where stats travel over a connection
    (Kubernetes); in-process (`surge up`) there is none to report.

Counted requests are those routed to a revision: health checks, probes and 404s for
unknown hosts are not (Knative's metric handler sits after the revision lookup). Unlike
Knative's activator, which sees only the requests it proxies, Surge's is also the
ingress, so serve-mode requests are counted too. A request whose client saw no status
(gone, connection cut) counts as 502, as in the queue-proxy. A removed revision's
series disappear with it.

Example: one 200 answered in 30 ms for hello-00001 of Service hello gives
`activator_request_count{...,response_code="200",response_code_class="2xx",
revision_name="hello-00001",service_name="hello"} 1.0` and a 1 in every
`activator_request_latencies_bucket` from `le="40.0"` up.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from dataplane import RevisionKey
from dataplane.metrics import LEGACY_LATENCY_BUCKETS_MS

__all__ = [
    "LEGACY_COUNTERS",
    "LEGACY_LATENCY_BUCKETS_MS",
    "ActivatorMetrics",
    "MetricsSource",
    "RequestCounts",
    "RevisionMetrics",
    "RevisionNamesFn",
    "RevisionRequests",
    "StatsConnection",
]

# OpenCensus exposed its counters under their bare names (no `_total`); dashboards query
# those. dataplane.render_exposition titles them so.
LEGACY_COUNTERS = ("activator_request_count",)

CONTAINER_NAME = "activator"
PEER_AUTOSCALER = "autoscaler"
LEGACY_LABELS = ("namespace_name", "service_name", "configuration_name", "revision_name",
                 "pod_name", "container_name")
OTEL_LABELS = ("k8s_namespace_name", "kn_service_name", "kn_configuration_name",
               "kn_revision_name")
OTEL_SHORT_LABELS = ("k8s_namespace_name", "kn_revision_name")

RevisionNamesFn = Callable[[RevisionKey], tuple[str, str]]
"""(Service name, Configuration name) of a revision; empty strings where not known."""


class _Series:
    """One status code's counts: latency buckets per boundary, not cumulative."""

    __slots__ = ("count", "sum_ms", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.sum_ms = 0.0
        self.buckets = [0] * (len(LEGACY_LATENCY_BUCKETS_MS) + 1)  # the last: above all (+Inf)


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Finished requests of one status: count, latency sum (ms), per-bucket counts."""

    status: int
    count: int
    sum_ms: float
    buckets: tuple[int, ...]  # one per LEGACY_LATENCY_BUCKETS_MS boundary, then +Inf only


class RevisionRequests:
    """The hot-path recorder of one revision: finished requests by status, plain ints."""

    __slots__ = ("_by_status",)

    def __init__(self) -> None:
        self._by_status: dict[int, _Series] = {}

    def record(self, status: int, latency_s: float) -> None:
        """One finished request: its status and seconds from arrival to the end."""
        series = self._by_status.get(status)
        if series is None:
            series = self._by_status[status] = _Series()
        latency_ms = latency_s * 1000.0
        series.count += 1
        series.sum_ms += latency_ms
        # bisect_left: a latency equal to a boundary belongs to that `le` bucket.
        series.buckets[bisect_left(LEGACY_LATENCY_BUCKETS_MS, latency_ms)] += 1

    def snapshot(self) -> tuple[RequestCounts, ...]:
        """Frozen counts, by status."""
        return tuple(RequestCounts(status, s.count, s.sum_ms, tuple(s.buckets))
                     for status, s in sorted(self._by_status.items()))


@dataclass(frozen=True, slots=True)
class RevisionMetrics:
    """What the collector renders for one revision, read when Prometheus scrapes."""

    key: RevisionKey
    concurrency: float  # last per-second average reported to the autoscaler
    queued: int  # parked in the throttler, waiting for a pod
    active: int  # holding a pod
    requests: tuple[RequestCounts, ...] = ()


class MetricsSource(Protocol):
    """Where the per-revision figures come from (`Activator` fits)."""

    def revision_metrics(self) -> Iterable[RevisionMetrics]: ...


class StatsConnection(Protocol):
    """The stats connection to the autoscaler, as its metrics see it."""

    @property
    def reachable(self) -> bool: ...

    @property
    def errors(self) -> int: ...


def _cumulative(counts: tuple[int, ...]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip(LEGACY_LATENCY_BUCKETS_MS, counts):
        total += n
        out.append((repr(bound), float(total)))
    out.append(("+Inf", float(total + counts[-1])))
    return out


class ActivatorMetrics(Collector):
    """A prometheus_client Collector for the activator, rendered from snapshots at scrape time."""

    def __init__(self, source: MetricsSource, registry: CollectorRegistry, *,
                 pod_name: str = CONTAINER_NAME, names: RevisionNamesFn | None = None,
                 connection: StatsConnection | None = None) -> None:
        self._source = source
        self._pod_name = pod_name
        self._names_of = names
        self._connection = connection
        # Names last resolved per revision: a revision the control plane has just
        # forgotten keeps its labels (no new series under `unknown`) while it is listed.
        self._names: dict[RevisionKey, tuple[str, str]] = {}
        registry.register(self)

    def describe(self) -> list[Metric]:
        """The families this collector yields (so registering does not call collect)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """Every family, one sample per revision (and per status for the request series)."""
        revisions = sorted(self._source.revision_metrics(), key=lambda r: r.key)
        names = self._resolve(revisions)
        f = self._families()
        for rev in revisions:
            ns, name = rev.key.namespace, rev.key.name
            service, configuration = names[rev.key]
            legacy = [v or "unknown" for v in (ns, service, configuration, name)]
            legacy += [self._pod_name, CONTAINER_NAME]
            f["activator_request_concurrency"].add_metric(legacy, rev.concurrency)
            f["kn_revision_request_concurrency"].add_metric(
                [ns, service, configuration, name], rev.concurrency)
            f["kn_revision_request_queued"].add_metric([ns, name], rev.queued)
            f["kn_revision_request_active"].add_metric([ns, name], rev.active)
            for r in rev.requests:
                code, cls = str(r.status), f"{r.status // 100}xx"
                labels = dict(zip(LEGACY_LABELS, legacy), response_code=code,
                              response_code_class=cls)
                f["activator_request_count"].add_sample(
                    "activator_request_count", labels, float(r.count))
                f["activator_request_latencies"].add_metric(
                    legacy + [code, cls], _cumulative(r.buckets), r.sum_ms)
        if self._connection is not None:
            f["kn_activator_stats_conn_reachable"].add_metric(
                [PEER_AUTOSCALER], 1.0 if self._connection.reachable else 0.0)
            f["kn_activator_stats_conn_errors"].add_metric(
                [PEER_AUTOSCALER], float(self._connection.errors))
        yield from f.values()

    def _resolve(self, revisions: list[RevisionMetrics]) -> dict[RevisionKey, tuple[str, str]]:
        resolved = {}
        for rev in revisions:
            names = self._names_of(rev.key) if self._names_of is not None else ("", "")
            if not any(names):
                names = self._names.get(rev.key, names)
            resolved[rev.key] = names
        self._names = resolved  # forgotten revisions leave the cache with their series
        return resolved

    def _families(self) -> dict[str, Metric]:
        legacy_status = list(LEGACY_LABELS) + ["response_code", "response_code_class"]
        families: dict[str, Metric] = {
            "activator_request_concurrency": GaugeMetricFamily(
                "activator_request_concurrency",
                "Concurrent requests routed to the activator (per-second average)",
                labels=LEGACY_LABELS),
            # A bare-named counter, as OpenCensus exposed it: the samples are added
            # under this exact name (a CounterMetricFamily would append `_total`).
            "activator_request_count": Metric(
                "activator_request_count", "The number of requests routed to the activator",
                "counter"),
            "activator_request_latencies": HistogramMetricFamily(
                "activator_request_latencies",
                "Time from arrival at the activator to the end of the response, in "
                "milliseconds", labels=legacy_status),
            "kn_revision_request_concurrency": GaugeMetricFamily(
                "kn_revision_request_concurrency",
                "Concurrent requests routed to the activator (per-second average)",
                labels=OTEL_LABELS),
            "kn_revision_request_queued": GaugeMetricFamily(
                "kn_revision_request_queued",
                "Requests parked in the activator, waiting for a pod",
                labels=OTEL_SHORT_LABELS),
            "kn_revision_request_active": GaugeMetricFamily(
                "kn_revision_request_active",
                "Requests the activator has sent to a pod and not yet finished",
                labels=OTEL_SHORT_LABELS),
        }
        if self._connection is not None:
            families["kn_activator_stats_conn_reachable"] = GaugeMetricFamily(
                "kn_activator_stats_conn_reachable",
                "Whether the peer is reachable from the activator (1 = reachable)",
                labels=["peer"])
            families["kn_activator_stats_conn_errors"] = CounterMetricFamily(
                "kn_activator_stats_conn_errors",
                "Connections to the peer that failed or were lost", labels=["peer"])
        return families
