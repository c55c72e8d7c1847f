"""The activator: the ingress of the local stack and Knative's activator in one.

Routes requests by Host, `Knative-Serving-Tag` and percent split to revisions; per
revision either holds and throttles them (PROXY mode: queue, probe new pods, poke the
autoscaler on a cold start) or sends them straight to ready pods (SERVE mode); reports
the concurrency it holds to a `dataplane.StatSink`; Knative's activator metrics come
from `Activator.metrics_collector(registry)` (metrics.py). Imports only `dataplane` (and
aiohttp for the pod probe). Start with `Activator`; see activator.py.
"""

from .activator import Activator, ActivatorConfig, ActivatorStats
from .handler import ActivatorHandler, RevisionState
from .lb_policy import (
    LBPolicy,
    Pick,
    PodSlot,
    first_available,
    least_loaded,
    policy_for,
    power_of_two_choices,
    round_robin,
)
from .metrics import (
    LEGACY_COUNTERS,
    ActivatorMetrics,
    MetricsSource,
    RequestCounts,
    RevisionMetrics,
    RevisionNamesFn,
    RevisionRequests,
    StatsConnection,
)
from .prober import HttpProbe, PodProber
from .reporter import ConcurrencyReporter
from .routes import HostRoute, RouteTable, normalize_host
from .throttler import (
    DEFAULT_QUEUE_DEPTH,
    CapacityError,
    CapacityTimeoutError,
    PodTracker,
    QueueFullError,
    RevisionGoneError,
    Throttler,
    ThrottlerStats,
)

__all__ = [
    "DEFAULT_QUEUE_DEPTH",
    "LEGACY_COUNTERS",
    "Activator",
    "ActivatorConfig",
    "ActivatorHandler",
    "ActivatorMetrics",
    "ActivatorStats",
    "CapacityError",
    "CapacityTimeoutError",
    "ConcurrencyReporter",
    "HostRoute",
    "HttpProbe",
    "LBPolicy",
    "MetricsSource",
    "Pick",
    "PodProber",
    "PodSlot",
    "PodTracker",
    "QueueFullError",
    "RequestCounts",
    "RevisionGoneError",
    "RevisionMetrics",
    "RevisionNamesFn",
    "RevisionRequests",
    "RevisionState",
    "RouteTable",
    "StatsConnection",
    "Throttler",
    "ThrottlerStats",
    "first_available",
    "least_loaded",
    "normalize_host",
    "policy_for",
    "power_of_two_choices",
    "round_robin",
]
