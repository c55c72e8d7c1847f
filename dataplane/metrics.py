"""What the queue-proxy's and the activator's Prometheus metrics share.

Knative's histogram boundaries (reference 7.1: OTel, seconds; 7.2: OpenCensus,
milliseconds) and the text rendering of a registry whose legacy counters must keep
their bare OpenCensus names: `generate_latest` titles every counter family
`<name>_total` in its HELP and TYPE lines, while the samples, and the dashboards built
on them, use `<name>`. `render_exposition` renames those two lines back, e.g.
`# TYPE revision_request_count counter`, then `revision_request_count{...} 3.0`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

__all__ = ["LATENCY_BUCKETS_S", "LEGACY_LATENCY_BUCKETS_MS", "render_exposition"]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
LEGACY_LATENCY_BUCKETS_MS = (
    5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0,
    500.0, 600.0, 700.0, 800.0, 900.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0, 100000.0,
)


def render_exposition(registry: CollectorRegistry, legacy_counters: Iterable[str] = ()) -> bytes:
    """`registry` in the Prometheus text format, `legacy_counters` titled by their bare names."""
    text = generate_latest(registry)
    for name in legacy_counters:
        bare = name.encode()
        text = text.replace(b"# HELP " + bare + b"_total ", b"# HELP " + bare + b" ", 1)
        text = text.replace(b"# TYPE " + bare + b"_total counter", b"# TYPE " + bare + b" counter", 1)
    return text
