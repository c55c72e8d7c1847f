"""The request-path library: proxy engine, breaker, stats, Stat wire format, Clock.

Everything on the request path stands on this package; it imports only the standard
library, uvloop, httptools, protobuf and prometheus_client. The proxy engine lives in
the `dataplane.proxy` subpackage (imported on its own: the autoscaler needs only Stat).
Also imported by module path, for the processes that need them: `dataplane.metrics`
(Knative's latency buckets, the Prometheus text with legacy counter names) and
`dataplane.gctune` (the garbage-collector tuning a daemon applies once it is serving).
"""

from .aio import first_of
from .breaker import (
    QUEUE_FULL_REASON,
    Admission,
    Breaker,
    BreakerStats,
    QueueFullError,
    new_queue_proxy_breaker,
)
from .clock import Clock, FakeClock, MonotonicClock
from .interfaces import EndpointsSink, Mode, RevisionEndpoints, StatSink
from .stat import PROTOBUF_CONTENT_TYPE, Stat, decode_wire_stats, encode_wire_stats
from .stats import (
    ACTIVATOR_NAME,
    PROXY_HEADER,
    REPORTING_PERIOD_S,
    RequestStats,
    RequestStatsReport,
    StatReporter,
    is_proxied,
    stat_from_report,
)
from .types import PodAddress, RevisionKey

__all__ = [
    "ACTIVATOR_NAME",
    "Admission",
    "Breaker",
    "BreakerStats",
    "Clock",
    "FakeClock",
    "MonotonicClock",
    "PROTOBUF_CONTENT_TYPE",
    "PROXY_HEADER",
    "PodAddress",
    "QUEUE_FULL_REASON",
    "QueueFullError",
    "REPORTING_PERIOD_S",
    "RequestStats",
    "RequestStatsReport",
    "RevisionKey",
    "Stat",
    "StatReporter",
    "EndpointsSink",
    "Mode",
    "RevisionEndpoints",
    "StatSink",
    "decode_wire_stats",
    "encode_wire_stats",
    "first_of",
    "is_proxied",
    "new_queue_proxy_breaker",
    "stat_from_report",
]
