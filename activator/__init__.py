"""The activator: the ingress of the local stack and Knative's activator in one.

Routes requests by Host, `Knative-Serving-Tag` and percent split to revisions; per
revision either holds and throttles them (PROXY mode: queue, probe new pods, poke the
autoscaler on a cold start) or sends them straight to ready pods (SERVE mode); reports
the concurrency it holds to a `dataplane.StatSink`. Imports only `dataplane` (and
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
    "Activator",
    "ActivatorConfig",
    "ActivatorHandler",
    "ActivatorStats",
    "CapacityError",
    "CapacityTimeoutError",
    "ConcurrencyReporter",
    "HostRoute",
    "HttpProbe",
    "LBPolicy",
    "Pick",
    "PodProber",
    "PodSlot",
    "PodTracker",
    "QueueFullError",
    "RevisionGoneError",
    "RevisionState",
    "RouteTable",
    "Throttler",
    "ThrottlerStats",
    "first_available",
    "least_loaded",
    "normalize_host",
    "policy_for",
    "power_of_two_choices",
    "round_robin",
]
