"""config-autoscaler, the per-revision autoscaling annotations, and the resolved ScalingSpec.

Three jobs, all pure (no I/O, no clock):

1. `AutoscalerConfig.from_configmap(data)` / `parse_autoscaler_config(source)` parse the
   `config-autoscaler` ConfigMap with Go's syntaxes (see `autoscaler.durations`) and check
   every rule Knative's pkg/autoscaler/config checks, in Knative's order, but report
   all problems at once in a `ConfigError`, one `key: value rule` line each.
2. `validate_annotations(annotations, config)` (from `autoscaler.annotations`, re-exported
   here) checks `autoscaling.knative.dev/*` annotations (and their legacy camelCase
   spellings) as Knative's webhook does and returns a list of `FieldError`s. A FieldError prints like Knative's apis.FieldError,
   `<message>: <key>[, <key>]`; the message carries the value and the rule, e.g.
   `expected 1 <= 0 <= 100: autoscaling.knative.dev/target-utilization-percentage`.
   Where Knative's message names no rule, we add it after "; ", e.g.
   `invalid value: -11; expected a number >= 0, or -1 for unlimited: <key>`.
3. `resolve_spec`, `resolve_windows`, `resolve_scale_bounds`, ... turn config +
   annotations + containerConcurrency into what the decider and the windows need.
   Precedence (annotation > ConfigMap > default) lives here and nowhere else. At
   runtime an annotation that fails to parse counts as absent, like Knative's
   pa_lifecycle.go: admission (validate_annotations) is where bad values are refused.

Worked example (TU 80% from the ConfigMap, CC 10, annotations `target: 50`, `window: 90s`):

>>> cfg = AutoscalerConfig.from_configmap({"container-concurrency-target-percentage": "80"})
>>> cfg.container_concurrency_target_fraction
0.8
>>> anns = {"autoscaling.knative.dev/target": "50", "autoscaling.knative.dev/window": "90s"}
>>> spec = resolve_spec(cfg, anns, container_concurrency=10)
>>> spec.total_value, spec.target_value, spec.stable_window   # min(50, CC 10) x 0.8
(10.0, 8.0, 90.0)
>>> resolve_windows(cfg, anns)                                 # panic = 10% of 90 s
(90.0, 9.0)
>>> bounds = {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/maxScale": "8"}
>>> resolve_scale_bounds(cfg, bounds), resolve_scale_bounds(cfg, bounds, reachable=False)
((2, 8), (0, 8))
>>> AutoscalerConfig.from_configmap({"stable-window": "2s", "max-scale-up-rate": "1"})
Traceback (most recent call last):
  ...
autoscaler.config.ConfigError: max-scale-up-rate: '1' must be > 1.0
stable-window: '2s' must be between 6s and 1h0m0s
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import yaml

from autoscaler.annotations import (
    ACTIVATION_SCALE_ANNOTATION,
    ANNOTATION_KEYS,
    ANNOTATION_PREFIX,
    CLASS_ANNOTATION,
    HPA_CLASS,
    INITIAL_SCALE_ANNOTATION,
    KPA_CLASS,
    LEGACY_ANNOTATIONS,
    LINEAR,
    MAX_SCALE_ANNOTATION,
    METRIC_AGGREGATION_ALGORITHM_ANNOTATION,
    METRIC_ANNOTATION,
    MIN_SCALE_ANNOTATION,
    PANIC_THRESHOLD_PERCENTAGE_ANNOTATION,
    PANIC_WINDOW_PERCENTAGE_ANNOTATION,
    SCALE_DOWN_DELAY_ANNOTATION,
    SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION,
    TARGET_ANNOTATION,
    TARGET_BURST_CAPACITY_ANNOTATION,
    TARGET_MIN,
    TARGET_UTILIZATION_PERCENTAGE_ANNOTATION,
    WEIGHTED_EXPONENTIAL,
    WINDOW_ANNOTATION,
    WINDOW_MAX_S,
    WINDOW_MIN_S,
    Annotations,
    FieldError,
    find_annotation,
    go_duration_text,
    parsed_or_none,
    validate_annotations,
)
from autoscaler.durations import NANOS_PER_SECOND, parse_bool, parse_duration_ns, parse_float
from autoscaler.durations import parse_int

__all__ = [
    # re-exported from autoscaler.annotations, where they live
    "ANNOTATION_KEYS", "ANNOTATION_PREFIX", "HPA_CLASS", "KPA_CLASS", "LEGACY_ANNOTATIONS",
    "FieldError", "validate_annotations",
    # this module
    "BUCKET_SIZE_S", "CONFIG_NAME", "AutoscalerConfig", "ConfigError", "ConfigProblem",
    "ScalingSpec", "parse_autoscaler_config", "resolve_aggregation_algorithm", "resolve_class",
    "resolve_initial_scale", "resolve_metric", "resolve_scale_bounds",
    "resolve_scale_to_zero_pod_retention", "resolve_spec", "resolve_windows",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "config-autoscaler"
BUCKET_SIZE_S = 1.0  # the smallest panic window: one metric bucket
_S = NANOS_PER_SECOND


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

    @classmethod
    def from_configmap(cls, data: Mapping[str, Any]) -> AutoscalerConfig:
        """Parse and validate a ConfigMap's `data` map (or a whole ConfigMap manifest)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"from_configmap takes a mapping, not {type(data).__name__}")
        return parse_autoscaler_config(data)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> AutoscalerConfig:
        """Parse and validate YAML: a ConfigMap manifest or a plain data mapping."""
        return parse_autoscaler_config(text)


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
    activation_scale: int = 0   # 0 = none, as Knative's DeciderSpec; 0 and 1 act alike
    activator_capacity: float = 100.0
    initial_scale: int = 1


# ---------------------------------------------------------------- config-autoscaler


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One broken rule: the offending key first, then any other key the rule involves."""

    keys: tuple[str, ...]
    value: str
    rule: str

    def __str__(self) -> str:
        return f"{self.keys[0]}: {self.value} {self.rule}"


class ConfigError(ValueError):
    """A rejected config-autoscaler: `.keys` (offending key first), `.reason`, `.problems`."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        self.keys = list(dict.fromkeys(k for p in self.problems for k in p.keys))
        self.reason = "\n".join(str(p) for p in self.problems)
        super().__init__(self.reason)


# Key -> (field, parser), in the order Knative's NewConfigFromMap parses them. Durations
# stay integer nanoseconds until the end so "whole seconds" checks are exact.
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "pod-autoscaler-class": ("pod_autoscaler_class", str),
    "enable-scale-to-zero": ("enable_scale_to_zero", parse_bool),
    "allow-zero-initial-scale": ("allow_zero_initial_scale", parse_bool),
    "max-scale-up-rate": ("max_scale_up_rate", parse_float),
    "max-scale-down-rate": ("max_scale_down_rate", parse_float),
    # The percentage is stored as a fraction once parsed (see _parse_data).
    "container-concurrency-target-percentage": (
        "container_concurrency_target_fraction", parse_float),
    "container-concurrency-target-default": ("container_concurrency_target_default", parse_float),
    "requests-per-second-target-default": ("requests_per_second_target_default", parse_float),
    "target-burst-capacity": ("target_burst_capacity", parse_float),
    "panic-window-percentage": ("panic_window_percentage", parse_float),
    "activator-capacity": ("activator_capacity", parse_float),
    "panic-threshold-percentage": ("panic_threshold_percentage", parse_float),
    "initial-scale": ("initial_scale", parse_int),
    "min-scale": ("min_scale", parse_int),
    "max-scale": ("max_scale", parse_int),
    "max-scale-limit": ("max_scale_limit", parse_int),
    "stable-window": ("stable_window", parse_duration_ns),
    "scale-down-delay": ("scale_down_delay", parse_duration_ns),
    "scale-to-zero-grace-period": ("scale_to_zero_grace_period", parse_duration_ns),
    "scale-to-zero-pod-retention-period": ("scale_to_zero_pod_retention_period", parse_duration_ns),
}
_SYNTAX = {
    parse_bool: "is not a boolean (true/false, t/f, 1/0)",
    parse_float: "is not a finite number",
    parse_int: "is not a 32-bit integer",
    parse_duration_ns: "is not a duration (like 60s, 1m30s, 500ms)",
}
_DURATION_FIELDS = frozenset(name for name, parse in _KEYS.values() if parse is parse_duration_ns)


def parse_autoscaler_config(source: str | bytes | Mapping[str, Any]) -> AutoscalerConfig:
    """Parse and validate config-autoscaler from YAML text, a manifest, or a data map."""
    if isinstance(source, (str, bytes)):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            reason = " ".join(str(exc).split())
            problem = ConfigProblem((CONFIG_NAME,), "<yaml>", f"is not valid YAML: {reason}")
            raise ConfigError([problem]) from None
        source = {} if source is None else source
    if not isinstance(source, Mapping):
        problem = ConfigProblem((CONFIG_NAME,), repr(source), "must be a ConfigMap or a mapping")
        raise ConfigError([problem])
    return _parse_data(_data_of(source))


def _data_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The data map of a ConfigMap manifest (checked), or `doc` itself if it is one."""
    if not {"kind", "apiVersion", "metadata"} & doc.keys():
        # A file holding only a ConfigMap's `data:` block means that block, not a
        # data map with one unknown key "data" (which would silently give defaults).
        if doc.keys() == {"data"} and isinstance(doc["data"], Mapping):
            return doc["data"]
        return doc
    problems = []
    if doc.get("kind") != "ConfigMap":
        problems.append(ConfigProblem(("kind",), repr(doc.get("kind")), "must be ConfigMap"))
    if "apiVersion" in doc and doc["apiVersion"] != "v1":
        problems.append(ConfigProblem(("apiVersion",), repr(doc["apiVersion"]), "must be v1"))
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if name != CONFIG_NAME:
        problems.append(ConfigProblem(("metadata.name",), repr(name), f"must be {CONFIG_NAME}"))
    data = doc.get("data") or {}
    if not isinstance(data, Mapping):
        problems.append(ConfigProblem(("data",), repr(data), "must be a mapping of strings"))
    if problems:
        raise ConfigError(problems)
    return data


def _parse_data(data: Mapping[str, Any]) -> AutoscalerConfig:
    """Parse every known key, then check every rule; raise with all problems found."""
    ignored = sorted(str(k) for k in data if k not in _KEYS)
    if ignored:
        logger.warning("%s: ignoring keys that are not settings: %s",
                       CONFIG_NAME, ", ".join(ignored))
    defaults = AutoscalerConfig()
    values = {f.name: getattr(defaults, f.name) for f in fields(AutoscalerConfig)}
    for name in _DURATION_FIELDS:
        values[name] = round(values[name] * _S)
    problems: list[ConfigProblem] = []
    for key, (name, parse) in _KEYS.items():
        if key not in data:
            continue
        text = data[key]
        if not isinstance(text, str):
            problems.append(ConfigProblem((key,), repr(text), "must be a string (quote it)"))
            continue
        try:
            values[name] = parse(text)
        except ValueError:
            problems.append(ConfigProblem((key,), repr(text), _SYNTAX[parse]))
    # For legacy reasons a value <= 1 is already a fraction, so "1" means 100%.
    if values["container_concurrency_target_fraction"] > 1.0:
        values["container_concurrency_target_fraction"] /= 100.0
    problems += _check(values, data, broken={p.keys[0] for p in problems})
    if problems:
        raise ConfigError(problems)
    for name in _DURATION_FIELDS:
        values[name] /= _S
    return AutoscalerConfig(**values)


def _check(v: dict[str, Any], data: Mapping[str, Any], broken: set[str]) -> list[ConfigProblem]:
    """Knative's validate(), in its order, collecting every problem instead of the first.

    A rule is skipped when a key it reads is already broken (unparsable, or failed an
    earlier rule): one problem per key, and no noise from a value we could not read.
    """
    problems: list[ConfigProblem] = []

    def rule(keys: tuple[str, ...], ok: bool, words: str) -> None:
        if ok or broken & set(keys):
            return
        shown = repr(data[keys[0]]) if keys[0] in data else f"{_default_text(keys[0])} (default)"
        problems.append(ConfigProblem(keys, shown, words))
        broken.add(keys[0])

    frac, limit = v["container_concurrency_target_fraction"], v["max_scale_limit"]
    rule(("scale-to-zero-grace-period",), v["scale_to_zero_grace_period"] > 0, "must be > 0s")
    rule(("scale-down-delay",), v["scale_down_delay"] >= 0, "must be >= 0s")
    rule(("scale-down-delay",), v["scale_down_delay"] % _S == 0, "must be whole seconds")
    rule(("scale-to-zero-pod-retention-period",), v["scale_to_zero_pod_retention_period"] >= 0,
         "must be >= 0s")
    tbc = v["target_burst_capacity"]
    rule(("target-burst-capacity",), tbc >= 0 or tbc == -1, "must be >= 0, or -1 for unlimited")
    rule(("container-concurrency-target-percentage",), 0 < frac <= 1,
         "must be in (0, 100] as a percentage or (0, 1] as a fraction")
    product = frac * v["container_concurrency_target_default"]
    rule(("container-concurrency-target-default", "container-concurrency-target-percentage"),
         product >= TARGET_MIN,
         f"times container-concurrency-target-percentage ({frac:g} as a fraction) gives a per-pod "
         f"target of {product:g}, must be >= {TARGET_MIN}")
    rps = v["requests_per_second_target_default"]
    rule(("requests-per-second-target-default",), rps >= TARGET_MIN, f"must be >= {TARGET_MIN}")
    rule(("activator-capacity",), v["activator_capacity"] >= 1, "must be >= 1")
    rule(("max-scale-up-rate",), v["max_scale_up_rate"] > 1, "must be > 1.0")
    rule(("max-scale-down-rate",), v["max_scale_down_rate"] > 1, "must be > 1.0")
    window = v["stable_window"]
    rule(("stable-window",), WINDOW_MIN_S * _S <= window <= WINDOW_MAX_S * _S,
         f"must be between {go_duration_text(WINDOW_MIN_S)} and {go_duration_text(WINDOW_MAX_S)}")
    rule(("stable-window",), window % _S == 0, "must be whole seconds")
    rule(("panic-window-percentage",), 1 <= v["panic_window_percentage"] <= 100,
         "must be between 1 and 100")
    initial = v["initial_scale"]
    rule(("initial-scale",), initial >= 0, "must be >= 0")
    rule(("initial-scale", "allow-zero-initial-scale"),
         initial != 0 or v["allow_zero_initial_scale"],
         "must be >= 1 unless allow-zero-initial-scale is true")
    rule(("min-scale",), v["min_scale"] >= 0, "must be >= 0")
    if limit > 0:
        rule(("max-scale", "max-scale-limit"), 1 <= v["max_scale"] <= limit,
             f"must be in [1, {limit}] when max-scale-limit is {limit}")
    else:
        rule(("max-scale",), v["max_scale"] >= 0, "must be >= 0 (0 means no limit)")
    rule(("max-scale-limit",), limit >= 0, "must be >= 0 (0 means no limit)")
    rule(("min-scale", "max-scale"), not 0 < v["max_scale"] < v["min_scale"],
         f"must be <= max-scale ({v['max_scale']}) when max-scale > 0")
    return problems


def _default_text(key: str) -> str:
    """The default of a ConfigMap key as a user would write it."""
    name = _KEYS[key][0]
    value = getattr(AutoscalerConfig(), name)
    return go_duration_text(value) if name in _DURATION_FIELDS else str(value)


# ---------------------------------------------------------------- resolution


def _annotation(annotations: Annotations, key: str, parse: Callable[[str], Any]) -> Any:
    """A parsed annotation, or None when absent or unparsable (Knative's pa_lifecycle)."""
    found = find_annotation(annotations or {}, key)
    return None if found is None else parsed_or_none(found[1], parse)


def resolve_class(config: AutoscalerConfig, annotations: Annotations = None) -> str:
    """The autoscaler class: the annotation, else the ConfigMap's, else KPA."""
    found = find_annotation(annotations or {}, CLASS_ANNOTATION)
    return found[1] if found else (config.pod_autoscaler_class or KPA_CLASS)


def resolve_metric(config: AutoscalerConfig, annotations: Annotations = None) -> str:
    """The scaling metric: the annotation, else cpu for HPA and concurrency otherwise."""
    found = find_annotation(annotations or {}, METRIC_ANNOTATION)
    if found and found[1]:
        return found[1]
    return "cpu" if resolve_class(config, annotations) == HPA_CLASS else "concurrency"


def resolve_spec(config: AutoscalerConfig, annotations: Annotations = None, *,
                 container_concurrency: int = 0, reachable: bool = True) -> ScalingSpec:
    """The decider's spec for one revision; never raises on bad annotations."""
    # total is the most a pod may take; target = total x TU is what the KPA aims for.
    #   rps:          total = rps default (200), TU fixed at 0.7         -> 140
    #   concurrency:  total = CC, or the soft default (100) when CC = 0   -> 70
    # A target annotation replaces total (capped at CC for concurrency, so we never
    # aim above the hard limit) and is still multiplied by TU: target 10 -> 7 per pod.
    metric = resolve_metric(config, annotations)
    if metric == "rps":
        total = config.requests_per_second_target_default
        tu = config.rps_target_utilization_fraction
    else:
        total = float(container_concurrency) or config.container_concurrency_target_default
        tu = config.container_concurrency_target_fraction
    if (target := _annotation(annotations, TARGET_ANNOTATION, parse_float)) is not None:
        total = target
        if metric == "concurrency" and container_concurrency != 0:
            total = min(target, float(container_concurrency))
    tu_pct = _annotation(annotations, TARGET_UTILIZATION_PERCENTAGE_ANNOTATION, parse_float)
    if tu_pct is not None:
        tu = tu_pct / 100.0
    threshold = _annotation(annotations, PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, parse_float)
    if threshold is None:
        threshold = config.panic_threshold_percentage
    tbc = _annotation(annotations, TARGET_BURST_CAPACITY_ANNOTATION, parse_float)
    delay_ns = _annotation(annotations, SCALE_DOWN_DELAY_ANNOTATION, parse_duration_ns)
    activation = _annotation(annotations, ACTIVATION_SCALE_ANNOTATION, parse_int)
    return ScalingSpec(
        metric=metric,
        target_value=max(TARGET_MIN, total * tu),
        total_value=total,
        target_burst_capacity=config.target_burst_capacity if tbc is None else tbc,
        panic_threshold=threshold / 100.0,
        max_scale_up_rate=config.max_scale_up_rate,
        max_scale_down_rate=config.max_scale_down_rate,
        stable_window=resolve_windows(config, annotations)[0],
        scale_down_delay=config.scale_down_delay if delay_ns is None else delay_ns / _S,
        reachable=reachable,
        # Knative's MakeDecider passes the annotation through and stores 0 when it is
        # absent; the decider only acts on values above 1.
        activation_scale=0 if activation is None else activation,
        activator_capacity=config.activator_capacity,
        initial_scale=resolve_initial_scale(config, annotations),
    )


def resolve_initial_scale(config: AutoscalerConfig, annotations: Annotations = None) -> int:
    """The annotation's initial scale, unless absent, or 0 while the cluster forbids 0."""
    value = _annotation(annotations, INITIAL_SCALE_ANNOTATION, parse_int)
    if value is None or (value == 0 and not config.allow_zero_initial_scale):
        return config.initial_scale
    return value


def resolve_windows(config: AutoscalerConfig,
                    annotations: Annotations = None) -> tuple[float, float]:
    """(stable, panic) window seconds; panic = max(1 s, stable x panic% rounded to 1 s)."""
    # Worked in integer nanoseconds as Go does: 60 s x 51% = 30.6 s -> 31 s;
    # 10 s x 10% = 1 s; 7 s x 10% = 0.7 s -> 1 s (never below one 1 s bucket).
    stable_ns = _annotation(annotations, WINDOW_ANNOTATION, parse_duration_ns)
    if stable_ns is None:
        stable_ns = round(config.stable_window * _S)
    pct = _annotation(annotations, PANIC_WINDOW_PERCENTAGE_ANNOTATION, parse_float)
    if pct is None:
        pct = config.panic_window_percentage
    panic_ns = int(float(stable_ns) * pct / 100.0)  # Go's float64 -> Duration truncates
    whole, rest = divmod(panic_ns, _S)
    panic_ns = (whole + (2 * rest >= _S)) * _S  # Duration.Round: halves round up
    return stable_ns / _S, max(panic_ns, round(BUCKET_SIZE_S * _S)) / _S


def resolve_scale_bounds(config: AutoscalerConfig, annotations: Annotations = None, *,
                         reachable: bool = True) -> tuple[int, int]:
    """(min, max) pods; min is 0 for an unreachable revision, max 0 means unbounded."""
    lo = 0
    if reachable:
        lo = _annotation(annotations, MIN_SCALE_ANNOTATION, parse_int)
        lo = config.min_scale if lo is None else lo
    hi = _annotation(annotations, MAX_SCALE_ANNOTATION, parse_int)
    return lo, config.max_scale if hi is None else hi


def resolve_scale_to_zero_pod_retention(config: AutoscalerConfig, annotations: Annotations = None,
                                        *, reachable: bool = True) -> float:
    """Seconds the last pod outlives the decision to scale to zero; 0 when unreachable."""
    if not reachable:
        return 0.0
    ns = _annotation(annotations, SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION, parse_duration_ns)
    return config.scale_to_zero_pod_retention_period if ns is None else ns / _S


def resolve_aggregation_algorithm(annotations: Annotations = None) -> str:
    """The window aggregation: weighted-exponential if the annotation asks, else linear."""
    found = find_annotation(annotations or {}, METRIC_AGGREGATION_ALGORITHM_ANNOTATION)
    if found and found[1] in (WEIGHTED_EXPONENTIAL, "weightedExponential"):
        return WEIGHTED_EXPONENTIAL
    return LINEAR
