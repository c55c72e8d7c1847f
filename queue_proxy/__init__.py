"""The queue-proxy sidecar: config, probes, readiness, drain, metrics and side servers.

`QueueProxyHandler` joins these pieces with `dataplane`'s proxy engine, breaker and stats;
`QueueProxyDaemon` runs them all (`python -m queue_proxy`); `queue_proxy.demo` is what
`./scripts/up` starts.
"""

from .config import (
    PROBE_HTTP,
    PROBE_TCP,
    ConfigError,
    ProbeSpec,
    QueueProxyConfig,
    parse_queue_proxy_config,
    parse_readiness_probes,
)
from .daemon import DaemonError, QueueProxyDaemon, serving_host
from .drain import Drainer, DrainPhase, DrainState, DrainStats
from .handler import (
    ROUTE_TAG_DEFAULT,
    ROUTE_TAG_DISABLED,
    ROUTE_TAG_UNDEFINED,
    QueueProxyHandler,
    Readiness,
    route_tag,
    to_wire,
)
from .metrics import RequestMetrics, ResourceLabels, register_metrics, render_exposition
from .probe import LocalResponse, ProbeKind, classify_request, local_response, needs_readiness
from .readiness import ReadinessProber, probe_once
from .servers import (
    WAIT_FOR_DRAIN_PATH,
    build_admin_handler,
    build_metrics_handler,
    build_stats_handler,
    start_side_server,
)

__all__ = [
    "ConfigError",
    "DaemonError",
    "DrainPhase",
    "DrainState",
    "DrainStats",
    "Drainer",
    "LocalResponse",
    "PROBE_HTTP",
    "PROBE_TCP",
    "ProbeKind",
    "ProbeSpec",
    "QueueProxyConfig",
    "QueueProxyDaemon",
    "QueueProxyHandler",
    "ROUTE_TAG_DEFAULT",
    "ROUTE_TAG_DISABLED",
    "ROUTE_TAG_UNDEFINED",
    "Readiness",
    "ReadinessProber",
    "RequestMetrics",
    "ResourceLabels",
    "WAIT_FOR_DRAIN_PATH",
    "build_admin_handler",
    "build_metrics_handler",
    "build_stats_handler",
    "classify_request",
    "local_response",
    "needs_readiness",
    "parse_queue_proxy_config",
    "parse_readiness_probes",
    "probe_once",
    "register_metrics",
    "render_exposition",
    "route_tag",
    "serving_host",
    "start_side_server",
    "to_wire",
]
