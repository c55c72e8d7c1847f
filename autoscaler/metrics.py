"""The autoscaler's Prometheus metrics, rendered from multiscaler snapshots at scrape time.

Two families of names describe each decided revision, so both old and new dashboards
work (reference 7.1 and 7.2):

* Knative's legacy OpenCensus names (<= v1.18), e.g. `autoscaler_desired_pods`, labelled
  `namespace_name`, `service_name`, `configuration_name`, `revision_name` (empty values
  read `unknown`, as Knative's resource labels did);
* the current OpenTelemetry instruments as Prometheus exports them (dots become
  underscores, `{item}`-style units vanish), e.g. `kn_revision_pods_desired`, labelled
  `k8s_namespace_name`, `kn_service_name`, `kn_configuration_name`, `kn_revision_name`.

The stable/panic/target gauges are those of the revision's scaling metric: concurrency
or requests per second, never both. A revision shows up after its first valid tick, as
in Knative, where the gauges are recorded by a successful Scale().

Nothing is counted on the hot path: `collect()` reads `snapshots()` when Prometheus
scrapes, and the registry is passed in (never prometheus_client's global one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .multiscaler import RevisionSnapshot

__all__ = ["AutoscalerMetrics", "SnapshotSource"]

LEGACY_LABELS = ("namespace_name", "service_name", "configuration_name", "revision_name")
OTEL_LABELS = ("k8s_namespace_name", "kn_service_name", "kn_configuration_name",
               "kn_revision_name")

# (legacy name, OTel name, help, value of a snapshot); the metric-specific ones follow.
_COMMON = [
    ("autoscaler_desired_pods", "kn_revision_pods_desired",
     "Number of pods the autoscaler wants", lambda s: s.desired_pods),
    ("autoscaler_excess_burst_capacity", "kn_revision_capacity_excess",
     "Excess burst capacity observed over the panic window",
     lambda s: s.excess_burst_capacity),
    ("autoscaler_panic_mode", "kn_revision_panic_mode",
     "1 if the autoscaler is in panic mode, else 0", lambda s: 1 if s.panic else 0),
]
_CONCURRENCY = [
    ("autoscaler_stable_request_concurrency", "kn_revision_concurrency_stable",
     "Average requests in flight over the stable window", lambda s: s.stable_value),
    ("autoscaler_panic_request_concurrency", "kn_revision_concurrency_panic",
     "Average requests in flight over the panic window", lambda s: s.panic_value),
    ("autoscaler_target_concurrency_per_pod", "kn_revision_concurrency_target",
     "The desired requests in flight per pod", lambda s: s.target_value),
]
_RPS = [
    ("autoscaler_stable_requests_per_second", "kn_revision_rps_stable",
     "Average requests per second over the stable window", lambda s: s.stable_value),
    ("autoscaler_panic_requests_per_second", "kn_revision_rps_panic",
     "Average requests per second over the panic window", lambda s: s.panic_value),
    ("autoscaler_target_requests_per_second", "kn_revision_rps_target",
     "The desired requests per second per pod", lambda s: s.target_value),
]
# Knative's KPA reconciler reported the pod counts; only the ready count is known here.
_LEGACY_ONLY = [
    ("autoscaler_actual_pods", "Number of pods that are ready (as of the last tick)",
     lambda s: s.ready_pods),
]


class SnapshotSource(Protocol):
    """Where the revisions' state comes from (`Multiscaler` fits)."""

    def snapshots(self) -> Iterable[RevisionSnapshot]: ...


def _legacy_labels(s: RevisionSnapshot) -> list[str]:
    return [v or "unknown" for v in
            (s.key.namespace, s.service_name, s.configuration_name, s.key.name)]


def _otel_labels(s: RevisionSnapshot) -> list[str]:
    return [s.key.namespace, s.service_name, s.configuration_name, s.key.name]


class AutoscalerMetrics(Collector):
    """A prometheus_client Collector for the autoscaler's per-revision gauges."""

    def __init__(self, source: SnapshotSource, registry: CollectorRegistry) -> None:
        self._source = source
        registry.register(self)

    def describe(self) -> list[Metric]:
        """The families this collector yields (so registering does not call collect)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """One gauge family per name, one sample per decided revision."""
        snapshots = [s for s in self._source.snapshots() if s.decided]
        families = self._families()
        for snap in snapshots:
            legacy, otel = _legacy_labels(snap), _otel_labels(snap)
            specific = _RPS if snap.metric == "rps" else _CONCURRENCY
            for legacy_name, otel_name, _, value in _COMMON + specific:
                families[legacy_name].add_metric(legacy, value(snap))
                families[otel_name].add_metric(otel, value(snap))
            for legacy_name, _, value in _LEGACY_ONLY:
                families[legacy_name].add_metric(legacy, value(snap))
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for legacy_name, otel_name, doc, _ in _COMMON + _CONCURRENCY + _RPS:
            families[legacy_name] = GaugeMetricFamily(legacy_name, doc, labels=LEGACY_LABELS)
            families[otel_name] = GaugeMetricFamily(otel_name, doc, labels=OTEL_LABELS)
        for legacy_name, doc, _ in _LEGACY_ONLY:
            families[legacy_name] = GaugeMetricFamily(legacy_name, doc, labels=LEGACY_LABELS)
        return families
