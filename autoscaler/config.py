"""config-autoscaler and the per-revision scaling spec.

(Skeleton: the data types are fixed here; parsing and validation are being written.)
"""

from __future__ import annotations

from dataclasses import dataclass

KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"


@dataclass(frozen=True, slots=True)
class AutoscalerConfig:
    """The `config-autoscaler` ConfigMap, parsed; durations in seconds.

    Constructing it directly does not validate (so `dataclasses.replace` works in tests);
    `from_configmap` parses and validates.
    """

    enable_scale_to_zero: bool = True
    container_concurrency_target_fraction: float = 0.7
    container_concurrency_target_default: float = 100.0
    requests_per_second_target_default: float = 200.0
    target_burst_capacity: float = 211.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    activator_capacity: float = 100.0
    stable_window: float = 60.0
    scale_down_delay: float = 0.0
    scale_to_zero_grace_period: float = 30.0
    scale_to_zero_pod_retention_period: float = 0.0
    pod_autoscaler_class: str = KPA_CLASS
    allow_zero_initial_scale: bool = False
    initial_scale: int = 1
    min_scale: int = 0
    max_scale: int = 0
    max_scale_limit: int = 0
    # Knative fixes the utilization for non-concurrency metrics; no ConfigMap key sets it.
    rps_target_utilization_fraction: float = 0.7


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingSpec:
    """What one revision's decider needs, resolved from config, annotations and CC."""

    metric: str = "concurrency"
    target_value: float = 70.0
    total_value: float = 100.0
    target_burst_capacity: float = 211.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    stable_window: float = 60.0
    scale_down_delay: float = 0.0
    reachable: bool = True
    activation_scale: int = 1
    activator_capacity: float = 100.0
    initial_scale: int = 1
