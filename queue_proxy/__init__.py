"""The queue-proxy sidecar: config, probes, readiness, drain, metrics and side servers.

The request handler and `__main__` wire these pieces with `dataplane`'s proxy engine,
breaker and stats.
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
from .drain import Drainer, DrainPhase, DrainState, DrainStats
from .metrics import RequestMetrics, ResourceLabels, register_metrics
from .probe import LocalResponse, ProbeKind, classify_request, local_response, needs_readiness
from .readiness import ReadinessProber, probe_once
from .servers import WAIT_FOR_DRAIN_PATH, build_admin_app, build_metrics_app, build_stats_app, start_app

__all__ = [
    "ConfigError",
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
    "ReadinessProber",
    "RequestMetrics",
    "ResourceLabels",
    "WAIT_FOR_DRAIN_PATH",
    "build_admin_app",
    "build_metrics_app",
    "build_stats_app",
    "classify_request",
    "local_response",
    "needs_readiness",
    "parse_queue_proxy_config",
    "parse_readiness_probes",
    "probe_once",
    "register_metrics",
    "start_app",
]
