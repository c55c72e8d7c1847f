"""The per-revision `autoscaling.knative.dev/*` annotations: their names and their validation.

`validate_annotations(annotations, config)` checks them as Knative's admission webhook
does (pkg/apis/autoscaling/annotation_validation.go) and returns every problem as a
`FieldError`, in Knative's order; an empty list means valid. Legacy camelCase spellings
(`LEGACY_ANNOTATIONS`) are read too, the kebab-case key winning when both are present.

Which problems are reported, and when (Knative's rules, reference 1.3):
  * `metric` is checked against the class (the annotation, else the ConfigMap's): KPA
    takes concurrency or rps, HPA any non-empty name, other classes anything;
  * `metric-aggregation-algorithm` is checked only when the class annotation names KPA;
  * a `class` ending in .knative.dev must be the KPA or HPA class; others are custom;
  * `max-scale` below `min-scale` is one error naming both keys, max first;
  * an unparsable bound reads as 0 in the checks that follow it, as in Knative.
A FieldError prints like Knative's apis.FieldError, `<message>: <key>[, <key>]`, and its
message starts with Knative's own text; where that text names no rule we add it after
"; ". One deliberate difference: Knative's initial-scale errors put the rule into the
path (`.../initial-scale must be greater than 0`); here `.keys` holds only real keys.

Worked example (`max-scale-limit` 10 in the ConfigMap):

>>> from autoscaler.config import AutoscalerConfig
>>> config = AutoscalerConfig(max_scale_limit=10)
>>> anns = {"autoscaling.knative.dev/minScale": "5", "autoscaling.knative.dev/max-scale": "20",
...         "autoscaling.knative.dev/window": "1m9s82ms"}
>>> for error in validate_annotations(anns, config):
...     print(error.keys, error.message)
['autoscaling.knative.dev/max-scale'] expected 1 <= 20 <= 10
['autoscaling.knative.dev/window'] must be specified with at most second precision; got 1m9s82ms
>>> validate_annotations({"autoscaling.knative.dev/class": "custom.example.com"}, config)
[]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autoscaler.durations import NANOS_PER_SECOND, format_duration, parse_duration_ns
from autoscaler.durations import parse_float, parse_int

if TYPE_CHECKING:
    from autoscaler.config import AutoscalerConfig

__all__ = [
    "ANNOTATION_KEYS", "ANNOTATION_PREFIX", "HPA_CLASS", "KPA_CLASS", "LEGACY_ANNOTATIONS",
    "FieldError", "find_annotation", "validate_annotations",
]

KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
TARGET_MIN = 0.01  # Knative's TargetMin: small CC x small TU may go below 1
WINDOW_MIN_S = 6.0  # three 2 s ticks; shorter windows miss data points
WINDOW_MAX_S = 3600.0
_S = NANOS_PER_SECOND


def go_duration_text(seconds: float) -> str:
    """Seconds as Go prints a Duration ("6s", "1h0m0s")."""
    return format_duration(round(seconds * _S))


ANNOTATION_PREFIX = "autoscaling.knative.dev/"
CLASS_ANNOTATION = ANNOTATION_PREFIX + "class"
METRIC_ANNOTATION = ANNOTATION_PREFIX + "metric"
TARGET_ANNOTATION = ANNOTATION_PREFIX + "target"
TARGET_UTILIZATION_PERCENTAGE_ANNOTATION = ANNOTATION_PREFIX + "target-utilization-percentage"
MIN_SCALE_ANNOTATION = ANNOTATION_PREFIX + "min-scale"
MAX_SCALE_ANNOTATION = ANNOTATION_PREFIX + "max-scale"
INITIAL_SCALE_ANNOTATION = ANNOTATION_PREFIX + "initial-scale"
ACTIVATION_SCALE_ANNOTATION = ANNOTATION_PREFIX + "activation-scale"
WINDOW_ANNOTATION = ANNOTATION_PREFIX + "window"
PANIC_WINDOW_PERCENTAGE_ANNOTATION = ANNOTATION_PREFIX + "panic-window-percentage"
PANIC_THRESHOLD_PERCENTAGE_ANNOTATION = ANNOTATION_PREFIX + "panic-threshold-percentage"
TARGET_BURST_CAPACITY_ANNOTATION = ANNOTATION_PREFIX + "target-burst-capacity"
SCALE_DOWN_DELAY_ANNOTATION = ANNOTATION_PREFIX + "scale-down-delay"
SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION = (
    ANNOTATION_PREFIX + "scale-to-zero-pod-retention-period")
METRIC_AGGREGATION_ALGORITHM_ANNOTATION = ANNOTATION_PREFIX + "metric-aggregation-algorithm"

# Legacy camelCase spellings still read; the kebab-case key wins when both are present
# (Knative's kmap.KeyPriority). Keys absent here have no alias.
LEGACY_ANNOTATIONS: dict[str, str] = {
    MIN_SCALE_ANNOTATION: ANNOTATION_PREFIX + "minScale",
    MAX_SCALE_ANNOTATION: ANNOTATION_PREFIX + "maxScale",
    INITIAL_SCALE_ANNOTATION: ANNOTATION_PREFIX + "initialScale",
    TARGET_UTILIZATION_PERCENTAGE_ANNOTATION: ANNOTATION_PREFIX + "targetUtilizationPercentage",
    PANIC_WINDOW_PERCENTAGE_ANNOTATION: ANNOTATION_PREFIX + "panicWindowPercentage",
    PANIC_THRESHOLD_PERCENTAGE_ANNOTATION: ANNOTATION_PREFIX + "panicThresholdPercentage",
    TARGET_BURST_CAPACITY_ANNOTATION: ANNOTATION_PREFIX + "targetBurstCapacity",
    SCALE_DOWN_DELAY_ANNOTATION: ANNOTATION_PREFIX + "scaleDownDelay",
    SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION:
        ANNOTATION_PREFIX + "scaleToZeroPodRetentionPeriod",
    METRIC_AGGREGATION_ALGORITHM_ANNOTATION: ANNOTATION_PREFIX + "metricAggregationAlgorithm",
}
# Every autoscaling annotation the autoscaler reads, kebab-case first, then the legacy
# camelCase aliases: what a tool may accept, and what anything else under the prefix is not.
ANNOTATION_KEYS: tuple[str, ...] = (
    CLASS_ANNOTATION, METRIC_ANNOTATION, TARGET_ANNOTATION,
    TARGET_UTILIZATION_PERCENTAGE_ANNOTATION, MIN_SCALE_ANNOTATION, MAX_SCALE_ANNOTATION,
    INITIAL_SCALE_ANNOTATION, ACTIVATION_SCALE_ANNOTATION, WINDOW_ANNOTATION,
    PANIC_WINDOW_PERCENTAGE_ANNOTATION, PANIC_THRESHOLD_PERCENTAGE_ANNOTATION,
    TARGET_BURST_CAPACITY_ANNOTATION, SCALE_DOWN_DELAY_ANNOTATION,
    SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION, METRIC_AGGREGATION_ALGORITHM_ANNOTATION,
    *LEGACY_ANNOTATIONS.values(),
)
LINEAR = "linear"
WEIGHTED_EXPONENTIAL = "weighted-exponential"
_ALGORITHMS = frozenset({LINEAR, WEIGHTED_EXPONENTIAL, "weightedExponential"})
_INT32_MAX = (1 << 31) - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
Annotations = Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class FieldError:
    """One annotation problem; prints as `<message>: <key>[, <key>]`, like Knative's."""

    message: str
    keys: list[str]

    def __str__(self) -> str:
        return f"{self.message}: {', '.join(self.keys)}"


def find_annotation(annotations: Mapping[str, Any], key: str) -> tuple[str, str] | None:
    """(spelling found, value) for `key` or its legacy alias; kebab-case first."""
    for spelling in (key, LEGACY_ANNOTATIONS.get(key)):
        # Only strings count: manifests parsed from YAML may carry an unquoted 1 or true.
        if spelling is not None and isinstance(annotations.get(spelling), str):
            return spelling, annotations[spelling]
    return None


def _invalid(value: str, rule: str) -> str:
    return f"invalid value: {value}; {rule}"


class _Errors(list):
    """The FieldErrors found so far."""

    def add(self, found: tuple[str, str], message: str) -> None:
        self.append(FieldError(message, [found[0]]))


def validate_annotations(annotations: Annotations, config: AutoscalerConfig) -> list[FieldError]:
    """Every problem with the autoscaling annotations, in Knative's order; [] if valid."""
    anns = annotations or {}
    errs = _Errors()
    for key, value in anns.items():
        if str(key).startswith(ANNOTATION_PREFIX) and not isinstance(value, str):
            errs.add((key, ""), _invalid(repr(value), "annotation values must be strings"))
    cls = find_annotation(anns, CLASS_ANNOTATION)
    if cls and cls[1].endswith(".knative.dev") and cls[1] not in (KPA_CLASS, HPA_CLASS):
        errs.add(cls, _invalid(cls[1], f"a *.knative.dev class must be {KPA_CLASS} or {HPA_CLASS}"))
    _validate_scale_bounds(anns, config, errs)
    _check_float(anns, PANIC_WINDOW_PERCENTAGE_ANNOTATION, 1.0, 100.0, errs)
    _check_float(anns, PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, 110.0, 1000.0, errs)
    if found := find_annotation(anns, TARGET_ANNOTATION):
        value = parsed_or_none(found[1], parse_float)
        if value is None:
            errs.add(found, _invalid(found[1], "expected a number"))
        elif value < TARGET_MIN:
            errs.add(found, f"target {found[1]} should be at least {TARGET_MIN}")
    _check_float(anns, TARGET_UTILIZATION_PERCENTAGE_ANNOTATION, 1.0, 100.0, errs)
    if found := find_annotation(anns, TARGET_BURST_CAPACITY_ANNOTATION):
        value = parsed_or_none(found[1], parse_float)
        if value is None or (value < 0 and value != -1):
            errs.add(found, _invalid(found[1], "expected a number >= 0, or -1 for unlimited"))
    _check_duration(anns, WINDOW_ANNOTATION, WINDOW_MIN_S, errs, whole=True)
    _check_duration(anns, SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION, 0.0, errs, whole=False)
    _check_duration(anns, SCALE_DOWN_DELAY_ANNOTATION, 0.0, errs, whole=True)
    if found := find_annotation(anns, METRIC_ANNOTATION):
        cls_name = cls[1] if cls else config.pod_autoscaler_class
        if cls_name == KPA_CLASS and found[1] not in ("concurrency", "rps"):
            errs.add(found, _invalid(found[1], "the kpa class scales on concurrency or rps"))
        elif cls_name == HPA_CLASS and not found[1]:
            errs.add(found, _invalid(found[1], "the hpa class needs a metric (cpu, memory, ...)"))
    # Other autoscaler classes may define their own algorithms: only an explicit KPA
    # class annotation makes this one checkable.
    found = find_annotation(anns, METRIC_AGGREGATION_ALGORITHM_ANNOTATION)
    if cls and cls[1] == KPA_CLASS and found and found[1] and found[1] not in _ALGORITHMS:
        errs.add(found, _invalid(found[1], f"expected {LINEAR} or {WEIGHTED_EXPONENTIAL}"))
    if found := find_annotation(anns, INITIAL_SCALE_ANNOTATION):
        value = parsed_or_none(found[1], lambda s: parse_int(s, 64))  # Knative uses Atoi here
        if value is None:
            errs.add(found, _invalid(found[1], "expected an integer"))
        elif value < 0:
            errs.add(found, _invalid(found[1], "expected >= 0"))
        elif value == 0 and not config.allow_zero_initial_scale:
            errs.add(found, _invalid(found[1], "initial-scale=0 not allowed by cluster "
                                     "(allow-zero-initial-scale is false)"))
    return list(errs)


def _validate_scale_bounds(anns: Mapping[str, str], config: AutoscalerConfig,
                           errs: _Errors) -> None:
    """min/max-scale >= 0 and ordered, max-scale within max-scale-limit, activation-scale."""

    def int_ge0(key: str) -> tuple[tuple[str, str] | None, int, bool]:
        found = find_annotation(anns, key)
        if found is None:
            return None, 0, True
        value = parsed_or_none(found[1], parse_int)
        if value is not None and value >= 0:
            return found, value, True
        if value is None and not _INTEGER.fullmatch(found[1]):
            errs.add(found, _invalid(found[1], "expected an integer"))
        else:
            errs.add(found, f"expected 0 <= {found[1]} <= {_INT32_MAX}")
        return found, 0, False  # a bad bound reads as 0 below, as in Knative

    min_found, lo, _ = int_ge0(MIN_SCALE_ANNOTATION)
    max_found, hi, hi_ok = int_ge0(MAX_SCALE_ANNOTATION)
    if hi != 0 and hi < lo:
        message = f"max-scale={hi} is less than min-scale={lo}"
        errs.append(FieldError(message, [max_found[0], min_found[0]]))
    limit = config.max_scale_limit
    # Knative also flags an unparsable max-scale as "0 (unlimited)"; one error is enough.
    if max_found is not None and hi_ok and limit > 0:
        if hi > limit:
            errs.add(max_found, f"expected 1 <= {hi} <= {limit}")
        if hi == 0:
            errs.add(max_found, f"max-scale=0 (unlimited), must be less than {limit}")
    if found := find_annotation(anns, ACTIVATION_SCALE_ANNOTATION):
        value = parsed_or_none(found[1], parse_int)
        if value is None:
            errs.add(found, _invalid(found[1], "expected an integer"))
        elif lo > value:
            errs.add(found, f"min-scale={lo} is greater than activation-scale={value}")
        elif hi != 0 and hi < value:
            errs.add(found, f"max-scale={hi} is less than activation-scale={value}")
        elif value < 2:
            errs.add(found, f"activation-scale={value} must be greater than 1")


def _check_float(anns: Mapping[str, str], key: str, lo: float, hi: float, errs: _Errors) -> None:
    if found := find_annotation(anns, key):
        value = parsed_or_none(found[1], parse_float)
        if value is None:
            errs.add(found, _invalid(found[1], "expected a number"))
        elif not lo <= value <= hi:
            errs.add(found, f"expected {lo:g} <= {found[1]} <= {hi:g}")


def _check_duration(anns: Mapping[str, str], key: str, lo_s: float, errs: _Errors, *,
                    whole: bool) -> None:
    if found := find_annotation(anns, key):
        ns = parsed_or_none(found[1], parse_duration_ns)
        if ns is None:
            errs.add(found, _invalid(found[1], "expected a duration like 60s"))
        elif not lo_s * _S <= ns <= WINDOW_MAX_S * _S:
            errs.add(found, f"expected {go_duration_text(lo_s)} <= {found[1]} <= {go_duration_text(WINDOW_MAX_S)}")
        elif whole and ns % _S:
            errs.add(found, f"must be specified with at most second precision; got {found[1]}")


def parsed_or_none(text: str, parse: Callable[[str], Any]) -> Any:
    """`parse(text)`, or None when it does not parse (Knative's runtime reading)."""
    try:
        return parse(text)
    except ValueError:
        return None
