"""The ConfigMaps the control plane reads: config-defaults, config-domain, config-autoscaler.

Each parses once into a frozen dataclass, checks every rule, and raises a
`ValidationError` naming each bad key (`data.<key>`) with the value and the rule, so
a rejected ConfigMap leaves the one in force untouched (parse, validate, then swap).
config-autoscaler is `autoscaler.AutoscalerConfig.from_configmap`; its ConfigError is
turned into the same FieldProblem shape here.

config-defaults (Knative pkg/apis/config/defaults.go): timeouts and containerConcurrency
that fill in what a revision template leaves unset, and the limits admission enforces.

config-domain (Knative pkg/reconciler/route/config/domain.go): each key is a domain;
its value is empty (the default domain) or YAML `selector: {label: value, ...}`. A
route takes the matching entry with the most selector labels, ties broken by the
alphabetically first domain. Deliberate difference: with no entry lacking a selector,
Surge's default domain is `example.com` (as in Knative's samples and our seeds), not
Knative's `svc.cluster.local`, which only resolves inside a cluster. Worked example:
data {"example.com": "", "prod.example.org": "selector:\\n  env: prod"} gives a route
labelled env=prod `prod.example.org`, every other route `example.com`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import yaml

from autoscaler import AutoscalerConfig, ConfigError

from .model import RevisionSpec
from .validation import FieldProblem, ValidationError

SYSTEM_NAMESPACE = "knative-serving"
AUTOSCALER_CONFIG = "config-autoscaler"
DEFAULTS_CONFIG = "config-defaults"
DOMAIN_CONFIG = "config-domain"
CONFIG_NAMES = frozenset({AUTOSCALER_CONFIG, DEFAULTS_CONFIG, DOMAIN_CONFIG})
DEFAULT_DOMAIN = "example.com"
CLUSTER_LOCAL_DOMAIN = "svc.cluster.local"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
EXAMPLE_KEY = "_example"  # documentation block in Knative's shipped ConfigMaps; never read

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_INT64 = 1 << 63


@dataclass(frozen=True, slots=True)
class DefaultsConfig:
    """config-defaults, parsed: revision defaults and admission limits (seconds, requests)."""

    revision_timeout_seconds: int = 300
    max_revision_timeout_seconds: int = 600
    revision_response_start_timeout_seconds: int = 300  # tracks revision-timeout-seconds
    revision_idle_timeout_seconds: int = 0  # 0 is off
    container_concurrency: int = 0
    container_concurrency_max_limit: int = 1000
    allow_container_concurrency_zero: bool = True


# Key -> (field, kind) in Knative's parse order. Keys Knative has that Surge does not use
# (container-name-template, revision-cpu-request, ...) are reported as ignored.
_DEFAULTS_KEYS = {
    "allow-container-concurrency-zero": ("allow_container_concurrency_zero", bool),
    "revision-timeout-seconds": ("revision_timeout_seconds", int),
    "max-revision-timeout-seconds": ("max_revision_timeout_seconds", int),
    "revision-idle-timeout-seconds": ("revision_idle_timeout_seconds", int),
    "container-concurrency": ("container_concurrency", int),
    "container-concurrency-max-limit": ("container_concurrency_max_limit", int),
    "revision-response-start-timeout-seconds": ("revision_response_start_timeout_seconds", int),
}


def _parse_value(text: Any, kind: type) -> int | bool:
    """strconv.ParseInt (64-bit) or ParseBool syntax; ValueError with the rule otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} must be a string (quote it)")
    if kind is bool:
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"{text!r} is not a boolean (true/false, t/f, 1/0)")
    if not _INTEGER.fullmatch(text) or not -_INT64 <= int(text) < _INT64:
        raise ValueError(f"{text!r} is not a 64-bit integer")
    return int(text)


def parse_defaults_config(data: Mapping[str, Any]) -> DefaultsConfig:
    """Parse and check config-defaults `data`; ValidationError lists every bad key."""
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for key, (name, kind) in _DEFAULTS_KEYS.items():
        if key in data:
            try:
                values[name] = _parse_value(data[key], kind)
            except ValueError as exc:
                problems.append(FieldProblem(f"data.{key}", str(exc)))
    if "revision_response_start_timeout_seconds" not in values:
        values["revision_response_start_timeout_seconds"] = values.get(
            "revision_timeout_seconds", DefaultsConfig().revision_timeout_seconds)
    cfg = replace(DefaultsConfig(), **values)
    broken = {p.path for p in problems}

    def rule(key: str, ok: bool, words: str) -> None:
        if f"data.{key}" not in broken and not ok:
            problems.append(FieldProblem(f"data.{key}", words))

    timeout = cfg.revision_timeout_seconds
    for key, value in (("revision-timeout-seconds", timeout),
                       ("max-revision-timeout-seconds", cfg.max_revision_timeout_seconds),
                       ("revision-response-start-timeout-seconds",
                        cfg.revision_response_start_timeout_seconds),
                       ("revision-idle-timeout-seconds", cfg.revision_idle_timeout_seconds)):
        rule(key, value >= 0, f"{value} must be >= 0")
    rule("revision-timeout-seconds", timeout <= cfg.max_revision_timeout_seconds,
         f"{timeout} must be <= max-revision-timeout-seconds ({cfg.max_revision_timeout_seconds})")
    start = cfg.revision_response_start_timeout_seconds
    rule("revision-response-start-timeout-seconds", start <= timeout,
         f"{start} must be <= revision-timeout-seconds ({timeout})")
    idle = cfg.revision_idle_timeout_seconds
    rule("revision-idle-timeout-seconds", idle <= timeout,
         f"{idle} must be <= revision-timeout-seconds ({timeout})")
    limit = cfg.container_concurrency_max_limit
    rule("container-concurrency-max-limit", 1 <= limit < 1 << 31,
         f"{limit} must be between 1 and {(1 << 31) - 1}")
    if 1 <= limit:
        rule("container-concurrency", 0 <= cfg.container_concurrency <= limit,
             f"{cfg.container_concurrency} must be between 0 and "
             f"container-concurrency-max-limit ({limit})")
    if problems:
        raise ValidationError(p.within(f"ConfigMap/{DEFAULTS_CONFIG}") for p in problems)
    return cfg


def default_revision_spec(spec: RevisionSpec, defaults: DefaultsConfig) -> RevisionSpec:
    """Fill in what config-defaults supplies, as Knative's revision_defaults.go does once
    at admission (so a later config-defaults change makes no new revision)."""
    timeout = spec.timeout_seconds or defaults.revision_timeout_seconds
    idle, start = spec.idle_timeout_seconds, spec.response_start_timeout_seconds
    # Knative sets these two only when the default is on and below the timeout.
    if idle is None and 0 < defaults.revision_idle_timeout_seconds < timeout:
        idle = defaults.revision_idle_timeout_seconds
    if start is None and 0 < defaults.revision_response_start_timeout_seconds < timeout:
        start = defaults.revision_response_start_timeout_seconds
    cc = spec.container_concurrency
    containers = tuple(c if c.name else replace(c, name="user-container")
                       for c in spec.containers)
    return replace(spec, containers=containers, timeout_seconds=timeout,
                   idle_timeout_seconds=idle, response_start_timeout_seconds=start,
                   container_concurrency=defaults.container_concurrency if cc is None else cc)


@dataclass(frozen=True, slots=True)
class DomainEntry:
    """One config-domain key: a domain, for routes whose labels match `selector`."""

    domain: str
    selector: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "selector", MappingProxyType(dict(self.selector)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every selector label is on the route with the same value."""
        return all(labels.get(k) == v for k, v in self.selector.items())


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """config-domain, parsed: which domain each route's URLs use."""

    entries: tuple[DomainEntry, ...] = (DomainEntry(DEFAULT_DOMAIN),)

    def lookup(self, labels: Mapping[str, str]) -> str:
        """The domain for a route with `labels`: the most specific matching entry."""
        if labels.get(VISIBILITY_LABEL) == "cluster-local":
            return CLUSTER_LOCAL_DOMAIN
        matching = [e for e in self.entries if e.matches(labels)]
        best = min(matching, key=lambda e: (-len(e.selector), e.domain), default=None)
        return best.domain if best else DEFAULT_DOMAIN


def parse_domain_config(data: Mapping[str, Any]) -> DomainConfig:
    """Parse and check config-domain `data`; ValidationError lists every bad key."""
    entries, problems = [], []
    for key in sorted(data):
        if key == EXAMPLE_KEY:
            continue
        where = f"data.{key}"
        if len(key) > 253 or not all(_DNS_LABEL.fullmatch(p) for p in str(key).split(".")):
            problems.append(FieldProblem(where, (
                f"{key!r} is not a domain name (lower-case DNS labels joined by '.')")))
            continue
        try:
            selector = _selector(data[key])
        except ValueError as exc:
            problems.append(FieldProblem(where, str(exc)))
            continue
        entries.append(DomainEntry(key, selector))
    if problems:
        raise ValidationError(p.within(f"ConfigMap/{DOMAIN_CONFIG}") for p in problems)
    if not any(not e.selector for e in entries):
        entries.append(DomainEntry(DEFAULT_DOMAIN))
    return DomainConfig(tuple(entries))


def _selector(value: Any) -> dict[str, str]:
    """The label selector of one config-domain value ("" or `selector:` YAML)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        raise ValueError(f"{value!r} must be a string: empty, or YAML 'selector: {{k: v}}'")
    try:
        doc = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"is not valid YAML: {' '.join(str(exc).split())}") from None
    if doc is None:
        return {}
    selector = doc.get("selector") if isinstance(doc, Mapping) else None
    if not isinstance(doc, Mapping) or set(doc) - {"selector", "type"} or (
            selector is not None and not (isinstance(selector, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in selector.items()))):
        raise ValueError(f"{value!r} must be empty or 'selector:' with string labels and values")
    return dict(selector or {})


def parse_autoscaler_configmap(data: Mapping[str, Any]) -> AutoscalerConfig:
    """config-autoscaler through the autoscaler's parser, its problems as FieldProblems."""
    try:
        return AutoscalerConfig.from_configmap(data)
    except ConfigError as exc:
        raise ValidationError(
            FieldProblem(f"data.{p.keys[0]}", f"{p.value} {p.rule}",
                         f"ConfigMap/{AUTOSCALER_CONFIG}") for p in exc.problems) from None


def ignored_keys(name: str, data: Mapping[str, Any]) -> list[str]:
    """Keys of config-defaults or config-domain that Surge does not read (for a warning)."""
    if name == DEFAULTS_CONFIG:
        return sorted(k for k in data if k not in _DEFAULTS_KEYS and k != EXAMPLE_KEY)
    return []
