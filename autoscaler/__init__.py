"""The Knative Pod Autoscaler: config, windows, the decider, collection, replay.

Modules: `config` (config-autoscaler, annotations, the resolved ScalingSpec),
`windows` and `batch` (Knative's aggregation windows, one revision or many at once),
`decider` (the pure KPA decision), `scaling` (applying a decision: bounds, scale-to-zero
gate, proxy/serve mode), `collector`, `scraper`, `statserver`, `multiscaler` (metric
collection and the tick loop), `metrics` (Prometheus), `replay` (trace replay).
"""

from .batch import BatchStats, WindowBatch
from .collector import CollectionStats, MetricCollection, is_poke, stat_record_time
from .config import (
    ANNOTATION_KEYS,
    CONFIG_NAME,
    HPA_CLASS,
    KPA_CLASS,
    LEGACY_ANNOTATIONS,
    AutoscalerConfig,
    ConfigError,
    ConfigProblem,
    FieldError,
    ScalingSpec,
    parse_autoscaler_config,
    resolve_aggregation_algorithm,
    resolve_class,
    resolve_initial_scale,
    resolve_metric,
    resolve_scale_bounds,
    resolve_scale_to_zero_pod_retention,
    resolve_spec,
    resolve_windows,
    validate_annotations,
)
from .decider import Decider, Decision, Observation, initial_excess_burst_capacity
from .metrics import AutoscalerMetrics, SnapshotSource
from .multiscaler import (
    Multiscaler,
    MultiscalerStats,
    OnDecision,
    PodsSource,
    RevisionSnapshot,
    Scraper,
)
from .replay import (
    ReplayError,
    ReplayOptions,
    ReplayResult,
    TraceError,
    parse_trace,
    replay,
    resolve_revision,
)
from .sample_size import sample_size
from .scaling import (
    Activity,
    PAState,
    ScaleInputs,
    ScaleResult,
    ScaleSettings,
    SKSMode,
    apply_decision,
    num_activators,
)
from .scraper import PodScraper, ReadyPod, ScrapeError
from .statserver import StatServer, StatServerStats
from .windows import (
    LINEAR,
    WEIGHTED_EXPONENTIAL,
    LinearWindow,
    MaxWindow,
    WeightedWindow,
    make_window,
    normalize_algorithm,
)

__all__ = [
    "ANNOTATION_KEYS", "CONFIG_NAME", "HPA_CLASS", "KPA_CLASS", "LEGACY_ANNOTATIONS", "LINEAR",
    "WEIGHTED_EXPONENTIAL", "Activity", "AutoscalerConfig", "AutoscalerMetrics",
    "BatchStats", "CollectionStats", "ConfigError", "ConfigProblem", "Decider",
    "Decision", "FieldError", "LinearWindow", "MaxWindow", "MetricCollection",
    "Multiscaler", "MultiscalerStats", "Observation", "OnDecision", "PAState",
    "PodScraper", "PodsSource", "ReplayError", "ReplayOptions", "ReplayResult", "TraceError", "ReadyPod", "RevisionSnapshot", "SKSMode",
    "ScaleInputs", "ScaleResult", "ScaleSettings", "ScalingSpec", "ScrapeError",
    "Scraper", "SnapshotSource", "StatServer", "StatServerStats", "WeightedWindow",
    "WindowBatch", "apply_decision", "initial_excess_burst_capacity", "make_window",
    "normalize_algorithm", "num_activators", "parse_autoscaler_config",
    "resolve_aggregation_algorithm", "resolve_class", "resolve_initial_scale",
    "parse_trace", "replay", "resolve_revision", "resolve_metric", "resolve_scale_bounds", "resolve_scale_to_zero_pod_retention",
    "resolve_spec", "resolve_windows", "is_poke", "sample_size", "stat_record_time",
    "validate_annotations",
]
