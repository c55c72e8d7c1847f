"""The queue-proxy's Prometheus metrics: plain counters on the hot path, rendered at scrape time.

Why not prometheus_client metrics directly: each `inc()`/`observe()` takes a lock and does
label lookups; on the request path we only bump ints in a dict entry (STYLE 8) and a
custom `Collector` turns them into metric families when Prometheus scrapes.

Two recorders feed the families, matching where Knative measures (reference 4.3, 7):
- `record_request(status, route_tag, latency_s)`: the outer request, queue wait included
  (route-tag labeller / otelhttp level). Renders the current
  `http_server_request_duration_seconds{http_response_status_code, kn_route_tag}` and the
  legacy `revision_request_count` / `revision_request_latencies` (ms, with route_tag).
- `record_app_request(status, latency_s)`: after the breaker, queue wait excluded.
  Renders `kn_serving_invocation_duration_seconds{http_response_status_code}` and the
  legacy `revision_app_request_count` / `revision_app_request_latencies`.
- `set_queue_depth(n)`: breaker in-flight (queued + executing), sampled as each request
  passes the breaker (itself included), where Knative's app-metrics handler samples it;
  rendered as `kn_serving_queue_depth` and legacy `revision_queue_depth`, only when
  containerConcurrency > 0 (no breaker, no queue).

Labels: current series carry the OTel resource attributes as labels
(`k8s_namespace_name`, `k8s_pod_name`, `k8s_container_name`, `kn_service_name`,
`kn_configuration_name`, `kn_revision_name`); legacy series carry `namespace_name`,
`service_name`, `configuration_name`, `revision_name` (`unknown` when empty), `pod_name`,
`container_name="queue-proxy"`, and `response_code`, `response_code_class` (`2xx`).
Example: one 200 answered in 30 ms with no tag gives
`revision_app_request_latencies_bucket{...,le="40.0",response_code="200",...} 1.0` and
`kn_serving_invocation_duration_seconds_bucket{...,le="0.05",...} 1.0`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from dataplane.metrics import LATENCY_BUCKETS_S, LEGACY_LATENCY_BUCKETS_MS
from dataplane.metrics import render_exposition as _render

__all__ = [
    "LATENCY_BUCKETS_S",
    "LEGACY_COUNTERS",
    "LEGACY_LATENCY_BUCKETS_MS",
    "MetricsCollector",
    "RequestMetrics",
    "ResourceLabels",
    "register_metrics",
    "render_exposition",
]


# Reference 7.2's counters: OpenCensus names, no `_total` suffix.
LEGACY_COUNTERS = ("revision_request_count", "revision_app_request_count")


@dataclass(frozen=True, slots=True)
class ResourceLabels:
    """Who this queue-proxy serves: the labels on every series."""

    namespace: str
    service: str
    configuration: str
    revision: str
    pod: str


class _Series:
    """Counts for one label set: per-bucket (not cumulative) counts in both schemes."""

    __slots__ = ("count", "sum_s", "buckets_s", "buckets_ms")

    def __init__(self) -> None:
        self.count = 0
        self.sum_s = 0.0
        # One slot per boundary plus one for "above the last" (+Inf only).
        self.buckets_s = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.buckets_ms = [0] * (len(LEGACY_LATENCY_BUCKETS_MS) + 1)

    def observe(self, latency_s: float) -> None:
        self.count += 1
        self.sum_s += latency_s
        # bisect_left: a value equal to a boundary belongs to that `le` bucket.
        self.buckets_s[bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1
        self.buckets_ms[bisect_left(LEGACY_LATENCY_BUCKETS_MS, latency_s * 1000.0)] += 1


class RequestMetrics:
    """The hot-path recorder: ints and floats only, read by `MetricsCollector` at scrape time."""

    __slots__ = ("labels", "has_queue_depth", "queue_depth", "_requests", "_app_requests")

    def __init__(self, labels: ResourceLabels, *, has_queue_depth: bool) -> None:
        self.labels = labels
        self.has_queue_depth = has_queue_depth  # containerConcurrency > 0
        self.queue_depth = 0
        self._requests: dict[tuple[int, str], _Series] = {}
        self._app_requests: dict[int, _Series] = {}

    def record_request(self, status: int, route_tag: str, latency_s: float) -> None:
        """One finished request as the client saw it (queue wait included)."""
        series = self._requests.get((status, route_tag))
        if series is None:
            series = self._requests[(status, route_tag)] = _Series()
        series.observe(latency_s)

    def record_app_request(self, status: int, latency_s: float) -> None:
        """One finished request as the user container served it (after the breaker)."""
        series = self._app_requests.get(status)
        if series is None:
            series = self._app_requests[status] = _Series()
        series.observe(latency_s)

    def set_queue_depth(self, depth: int) -> None:
        """The breaker's in-flight count (queued + executing) as a request passes the breaker."""
        self.queue_depth = depth


def _cumulative(bounds: Sequence[float], counts: list[int]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip(bounds, counts):
        total += n
        out.append((repr(float(bound)), float(total)))
    out.append(("+Inf", float(total + counts[-1])))
    return out


def _or_unknown(value: str) -> str:
    return value or "unknown"


class MetricsCollector(Collector):
    """Renders a `RequestMetrics` in both the current and the legacy Knative names."""

    def __init__(self, metrics: RequestMetrics) -> None:
        self._metrics = metrics
        r = metrics.labels
        self._otel = (
            ("k8s_namespace_name", r.namespace), ("k8s_pod_name", r.pod),
            ("k8s_container_name", "queue-proxy"), ("kn_service_name", r.service),
            ("kn_configuration_name", r.configuration), ("kn_revision_name", r.revision),
        )
        self._legacy = (
            ("namespace_name", _or_unknown(r.namespace)), ("service_name", _or_unknown(r.service)),
            ("configuration_name", _or_unknown(r.configuration)),
            ("revision_name", _or_unknown(r.revision)), ("pod_name", r.pod),
            ("container_name", "queue-proxy"),
        )

    def describe(self) -> list[Metric]:
        """Nothing up front: families appear as requests do (keeps registration cheap)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Build every family from the current counters."""
        m = self._metrics
        # Snapshot the dicts: a scrape must not see them change size mid-iteration.
        requests = list(m._requests.items())
        app_requests = list(m._app_requests.items())
        otel_names = [k for k, _ in self._otel]
        legacy_names = [k for k, _ in self._legacy]
        otel_values = [v for _, v in self._otel]
        legacy_values = [v for _, v in self._legacy]

        server = HistogramMetricFamily(
            "http_server_request_duration_seconds", "Duration of HTTP server requests.",
            labels=otel_names + ["http_response_status_code", "kn_route_tag"])
        invocation = HistogramMetricFamily(
            "kn_serving_invocation_duration_seconds",
            "The duration of requests served by the user container, after the breaker.",
            labels=otel_names + ["http_response_status_code"])
        # OpenCensus exposed these counters typed `counter` under their bare names (no
        # `_total`), which is what dashboards query; `render_exposition` keeps both.
        count = Metric(LEGACY_COUNTERS[0], "The number of requests that are routed to queue-proxy",
                       "counter")
        latencies = HistogramMetricFamily(
            "revision_request_latencies", "The response time in millisecond",
            labels=legacy_names + ["response_code", "response_code_class", "route_tag"])
        app_count = Metric(LEGACY_COUNTERS[1],
                           "The number of requests that are routed to user-container", "counter")
        app_latencies = HistogramMetricFamily(
            "revision_app_request_latencies", "The response time in millisecond",
            labels=legacy_names + ["response_code", "response_code_class"])

        for (status, tag), s in requests:
            code, cls = str(status), f"{status // 100}xx"
            server.add_metric(otel_values + [code, tag], _cumulative(LATENCY_BUCKETS_S, s.buckets_s), s.sum_s)
            labels = dict(self._legacy, response_code=code, response_code_class=cls, route_tag=tag)
            count.add_sample(LEGACY_COUNTERS[0], labels, float(s.count))
            latencies.add_metric(legacy_values + [code, cls, tag],
                                 _cumulative(LEGACY_LATENCY_BUCKETS_MS, s.buckets_ms), s.sum_s * 1000.0)
        for status, s in app_requests:
            code, cls = str(status), f"{status // 100}xx"
            invocation.add_metric(otel_values + [code], _cumulative(LATENCY_BUCKETS_S, s.buckets_s), s.sum_s)
            labels = dict(self._legacy, response_code=code, response_code_class=cls)
            app_count.add_sample(LEGACY_COUNTERS[1], labels, float(s.count))
            app_latencies.add_metric(legacy_values + [code, cls],
                                     _cumulative(LEGACY_LATENCY_BUCKETS_MS, s.buckets_ms), s.sum_s * 1000.0)
        yield from (server, invocation, count, latencies, app_count, app_latencies)

        if m.has_queue_depth:
            depth = GaugeMetricFamily("kn_serving_queue_depth",
                                      "Requests in the queue-proxy breaker (queued + executing).",
                                      labels=otel_names)
            depth.add_metric(otel_values, float(m.queue_depth))
            legacy_depth = GaugeMetricFamily(
                "revision_queue_depth",
                "The current number of items in the serving and waiting queue.",
                labels=legacy_names)
            legacy_depth.add_metric(legacy_values, float(m.queue_depth))
            yield depth
            yield legacy_depth


def register_metrics(metrics: RequestMetrics, registry: CollectorRegistry) -> MetricsCollector:
    """Register a collector for `metrics` in `registry` (never the global one) and return it."""
    collector = MetricsCollector(metrics)
    registry.register(collector)
    return collector



def render_exposition(registry: CollectorRegistry) -> bytes:
    """`registry` in the Prometheus text format, the legacy counters under their bare names."""
    return _render(registry, LEGACY_COUNTERS)
