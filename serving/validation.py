"""Knative's admission checks for Services, Configurations and Routes.

Each `validate_*` function returns every problem it finds as a `FieldProblem(path,
reason)`, the path written the way `kubectl explain` names fields
(`spec.template.spec.containers[0].ports[0].containerPort`), so one apply reports all
mistakes at once. `ValidationError` carries them and prints one line per problem:
`Service/hello: spec.traffic: traffic targets sum to 90, want 100`.

The rules are Knative's webhook's (pkg/apis/serving/v1/*_validation.go,
pkg/apis/serving/k8s_validation.go, pkg/apis/serving/metadata_validation.go):
names, one user container with reserved ports and env vars, containerConcurrency and
timeouts within config-defaults, traffic percents summing to exactly 100, tags unique
DNS-1035 labels, BYO revision names prefixed by their parent, autoscaling annotations
only on the template and valid against the current config-autoscaler.

Deliberate differences, all stricter or local-mode driven:
- a container needs `image` or `command` (Knative: `image`), because local pods run
  `command`; the image reference itself is not parsed (the seeds use `{username}`);
- responseStartTimeoutSeconds and idleTimeoutSeconds must not exceed the revision's
  timeout (the queue-proxy refuses such a revision, so admission says it first);
- Service, Configuration and Route names must leave room for their revision and tag
  host names within 63 characters, instead of being hashed short (kmeta.ChildName);
- `valueFrom`/`envFrom` and multi-container specs are refused (serving.manifests)
  because one machine has no Secrets, ConfigMaps or sidecar support.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoscaler import AutoscalerConfig, validate_annotations
from autoscaler.durations import NANOS_PER_SECOND, parse_duration_ns

from .model import Configuration, Container, RevisionTemplate, Route, Service, TrafficTarget

if TYPE_CHECKING:
    from .configmaps import DefaultsConfig

AUTOSCALING_PREFIX = "autoscaling.knative.dev"
# queue-proxy serving 8012, h2c 8013, admin 8022, stats 9090, metrics 9091, profiling 8008.
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091, 8008})
RESERVED_ENV_VARS = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
RESERVED_CONTAINER_NAMES = frozenset({"queue-proxy"})
VALID_PORT_NAMES = frozenset({"", "h2c", "http1"})
MAX_LABEL = 63  # RFC 1035 label length
# Room for "-00001" after a name, so `<name>-<generation:05d>` stays a DNS label.
MAX_PARENT_NAME = MAX_LABEL - len("-00001")

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One rejected field: where (`path`), why (`reason`), and in which object."""

    path: str
    reason: str
    object: str = ""  # "Service/hello"; "" while the caller has not said yet

    def within(self, obj: str) -> FieldProblem:
        """The same problem, attributed to `obj` (kind/name)."""
        return FieldProblem(self.path, self.reason, obj)

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.object}: {where}{self.reason}" if self.object else f"{where}{self.reason}"


class ValidationError(ValueError):
    """A rejected apply: `.problems` lists every FieldProblem, one per line in the message."""

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def dns1035_label_problem(value: str) -> str | None:
    """Why `value` is not an RFC 1035 label (a Kubernetes Service name), or None."""
    if len(value) > MAX_LABEL:
        return f"{value!r} is longer than {MAX_LABEL} characters"
    if not _DNS1035.fullmatch(value):
        return (f"{value!r} is not a DNS-1035 label: lower-case letters, digits and '-', "
                "starting with a letter and ending with a letter or digit")
    return None


def dns1123_label_problem(value: str) -> str | None:
    """Why `value` is not an RFC 1123 label (a namespace name), or None."""
    if len(value) > MAX_LABEL or not _DNS1123_LABEL.fullmatch(value):
        return (f"{value!r} is not a DNS-1123 label: at most {MAX_LABEL} lower-case letters, "
                "digits and '-', starting and ending with a letter or digit")
    return None


def qualified_name_problem(value: str) -> str | None:
    """Why `value` is not a Kubernetes qualified name (`[prefix/]name`), or None."""
    prefix, _, name = value.rpartition("/")
    if prefix and (len(prefix) > 253 or not all(
            _DNS1123_LABEL.fullmatch(part) for part in prefix.split("."))):
        return f"{value!r}: the prefix before '/' must be a DNS subdomain"
    if not name or len(name) > MAX_LABEL or not _QUALIFIED.fullmatch(name):
        return (f"{value!r} is not a qualified name: at most {MAX_LABEL} letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit")
    return None


def validate_object_meta(kind: str, name: str, namespace: str,
                         annotations: Mapping[str, str]) -> list[FieldProblem]:
    """Name and namespace, and no autoscaling annotation outside the template."""
    problems = []
    if not name:
        problems.append(FieldProblem("metadata.name", "missing field: a name is required"))
    elif reason := dns1035_label_problem(name):
        problems.append(FieldProblem("metadata.name", reason))
    elif kind != "Route" and len(name) > MAX_PARENT_NAME:
        problems.append(FieldProblem("metadata.name", (
            f"{name!r} is longer than {MAX_PARENT_NAME} characters, so its revision names "
            f"({name}-00001, ...) would not fit in a {MAX_LABEL}-character DNS label")))
    if reason := dns1123_label_problem(namespace):
        problems.append(FieldProblem("metadata.namespace", reason))
    for key in sorted(annotations):
        if key.startswith(AUTOSCALING_PREFIX):
            problems.append(FieldProblem(f"metadata.annotations.{key}", (
                f"autoscaling annotations belong under spec.template.metadata.annotations; "
                f"move {key!r} there to have it take effect")))
    return problems


def validate_service(svc: Service, defaults: DefaultsConfig,
                     autoscaler: AutoscalerConfig) -> list[FieldProblem]:
    """Every problem with a Service, attributed to `Service/<name>`."""
    meta = svc.metadata
    problems = validate_object_meta("Service", meta.name, meta.namespace, meta.annotations)
    problems += validate_template(svc.template, meta.name, defaults, autoscaler)
    if svc.traffic:  # empty traffic defaults to 100% on the latest revision
        problems += validate_traffic(svc.traffic, meta.name, in_service=True)
    return [p.within(f"Service/{meta.name}") for p in problems]


def validate_configuration(cfg: Configuration, defaults: DefaultsConfig,
                           autoscaler: AutoscalerConfig) -> list[FieldProblem]:
    """Every problem with a Configuration, attributed to `Configuration/<name>`."""
    meta = cfg.metadata
    problems = validate_object_meta("Configuration", meta.name, meta.namespace,
                                    meta.annotations)
    problems += validate_template(cfg.template, meta.name, defaults, autoscaler)
    return [p.within(f"Configuration/{meta.name}") for p in problems]


def validate_route(route: Route) -> list[FieldProblem]:
    """Every problem with a Route, attributed to `Route/<name>`."""
    meta = route.metadata
    problems = validate_object_meta("Route", meta.name, meta.namespace, meta.annotations)
    problems += validate_traffic(route.traffic, meta.name, in_service=False)
    return [p.within(f"Route/{meta.name}") for p in problems]


PROGRESS_DEADLINE_ANNOTATION = "serving.knative.dev/progress-deadline"
# Knative's default (config-deployment progress-deadline): how long a revision's pods
# may take to become ready before the revision is marked failed.
DEFAULT_PROGRESS_DEADLINE_S = 600.0


def parse_progress_deadline(text: str) -> float:
    """Seconds of a progress-deadline value: a positive Go duration of whole seconds
    (it becomes a Deployment's progressDeadlineSeconds); ValueError saying the rule."""
    try:
        ns = parse_duration_ns(text)
    except ValueError:
        ns = -1
    if ns <= 0 or ns % NANOS_PER_SECOND:
        raise ValueError(f"{text!r} must be a positive duration of whole seconds (like 600s "
                         "or 10m)")
    return ns / NANOS_PER_SECOND


def validate_template(template: RevisionTemplate, parent: str, defaults: DefaultsConfig,
                      autoscaler: AutoscalerConfig) -> list[FieldProblem]:
    """`spec.template`: BYO name, annotations against config-autoscaler, and the spec."""
    base = "spec.template"
    problems = []
    if template.name:
        if reason := dns1035_label_problem(template.name):
            problems.append(FieldProblem(f"{base}.metadata.name", reason))
        elif parent and not template.name.startswith(parent + "-"):
            problems.append(FieldProblem(f"{base}.metadata.name", (
                f"{template.name!r} must start with {parent + '-'!r}: a revision is named "
                "after its parent")))
    for err in validate_annotations(template.annotations, autoscaler):
        for key in err.keys:
            problems.append(FieldProblem(f"{base}.metadata.annotations.{key}", err.message))
    deadline = template.annotations.get(PROGRESS_DEADLINE_ANNOTATION)
    if deadline is not None:
        try:
            parse_progress_deadline(deadline)
        except ValueError as exc:
            problems.append(FieldProblem(
                f"{base}.metadata.annotations.{PROGRESS_DEADLINE_ANNOTATION}", str(exc)))
    spec, path = template.spec, f"{base}.spec"
    if not spec.containers:
        problems.append(FieldProblem(f"{path}.containers",
                                     "missing field: one container is required"))
    elif len(spec.containers) > 1:
        problems.append(FieldProblem(f"{path}.containers", (
            f"found {len(spec.containers)} containers; Surge runs one container per revision "
            "(multi-container revisions are not supported yet)")))
    else:
        problems += validate_container(spec.containers[0], f"{path}.containers[0]")
    problems += _validate_limits(template, path, defaults)
    return problems


def _validate_limits(template: RevisionTemplate, path: str,
                     defaults: DefaultsConfig) -> list[FieldProblem]:
    """containerConcurrency and the three timeouts against config-defaults."""
    spec, problems = template.spec, []
    cc = spec.container_concurrency
    low = 0 if defaults.allow_container_concurrency_zero else 1
    if cc is not None and not low <= cc <= defaults.container_concurrency_max_limit:
        problems.append(FieldProblem(f"{path}.containerConcurrency", (
            f"{cc} is outside [{low}, {defaults.container_concurrency_max_limit}] "
            "(config-defaults container-concurrency-max-limit)")))
    timeout = spec.timeout_seconds
    limit = defaults.max_revision_timeout_seconds
    if timeout and not 0 <= timeout <= limit:
        problems.append(FieldProblem(f"{path}.timeoutSeconds", (
            f"{timeout} is outside [0, {limit}] "
            "(config-defaults max-revision-timeout-seconds)")))
    effective = timeout or defaults.revision_timeout_seconds
    for field_name, value in (("responseStartTimeoutSeconds", spec.response_start_timeout_seconds),
                              ("idleTimeoutSeconds", spec.idle_timeout_seconds)):
        if value is not None and not 0 <= value <= effective:
            problems.append(FieldProblem(f"{path}.{field_name}", (
                f"{value} is outside [0, {effective}]: it may not exceed the revision's "
                "timeoutSeconds")))
    return problems


def validate_container(c: Container, path: str) -> list[FieldProblem]:
    """The user container: something to run, reserved names, env vars and ports."""
    problems = []
    if not c.image and not c.command:
        problems.append(FieldProblem(path, (
            "missing field(s): image, command; set image (the container image) or command "
            "(the program a local pod runs)")))
    if c.name in RESERVED_CONTAINER_NAMES:
        problems.append(FieldProblem(f"{path}.name", f"{c.name!r} is a reserved container name"))
    for i, env in enumerate(c.env):
        if not env.name:
            problems.append(FieldProblem(f"{path}.env[{i}].name", "missing field: name"))
        elif env.name in RESERVED_ENV_VARS:
            problems.append(FieldProblem(f"{path}.env[{i}].name", (
                f"{env.name!r} is a reserved environment variable (Surge sets it for the pod)")))
    if len(c.ports) > 1:
        problems.append(FieldProblem(f"{path}.ports", (
            "more than one container port is set; only a single port is allowed")))
    if c.ports:
        port = c.ports[0]
        at = f"{path}.ports[0]"
        if port.container_port in RESERVED_PORTS:
            problems.append(FieldProblem(f"{at}.containerPort", (
                f"{port.container_port} is a reserved port (the queue-proxy's), "
                "please use a different value")))
        elif not 0 <= port.container_port <= 65535:
            problems.append(FieldProblem(f"{at}.containerPort",
                                         f"{port.container_port} is outside [0, 65535]"))
        if port.name not in VALID_PORT_NAMES:
            problems.append(FieldProblem(f"{at}.name", (
                f"port name {port.name!r} is not allowed; it must be empty, h2c or http1")))
        if port.protocol not in ("", "TCP"):
            problems.append(FieldProblem(f"{at}.protocol",
                                         f"{port.protocol!r} is not allowed; only TCP is"))
    if c.readiness_probe is not None:
        problems += _validate_probe(c.readiness_probe, c.user_port, f"{path}.readinessProbe")
    return problems


def _validate_probe(probe: Mapping, user_port: int, path: str) -> list[FieldProblem]:
    """A readiness probe may only name the user port, and its timings must be sane."""
    problems = []
    for handler in ("httpGet", "tcpSocket", "grpc"):
        action = probe.get(handler)
        if isinstance(action, Mapping) and action.get("port") not in (None, 0, user_port):
            problems.append(FieldProblem(f"{path}.{handler}.port", (
                f"{action.get('port')!r} must be the container port ({user_port}): "
                "the queue-proxy probes the user container there")))
    for key, low in (("periodSeconds", 0), ("initialDelaySeconds", 0), ("successThreshold", 1),
                     ("timeoutSeconds", 0), ("failureThreshold", 0)):
        value = probe.get(key)
        if value is not None and (type(value) is not int or value < low):
            problems.append(FieldProblem(f"{path}.{key}",
                                         f"{value!r} must be an integer >= {low}"))
    return problems


def validate_traffic(traffic: Sequence[TrafficTarget], route_name: str, *,
                     in_service: bool) -> list[FieldProblem]:
    """`spec.traffic` as Knative's route_validation.go checks it (all problems)."""
    problems: list[FieldProblem] = []
    first_by_tag: dict[str, int] = {}
    total = 0
    for i, t in enumerate(traffic):
        at = f"spec.traffic[{i}]"
        problems += _validate_target(t, at, in_service)
        total += t.percent or 0
        if not t.tag:
            continue
        if reason := dns1035_label_problem(t.tag):
            problems.append(FieldProblem(f"{at}.tag", reason))
        elif len(f"{t.tag}-{route_name}") > MAX_LABEL:
            problems.append(FieldProblem(f"{at}.tag", (
                f"the tag host {t.tag}-{route_name} is longer than {MAX_LABEL} characters")))
        if t.tag in first_by_tag:
            problems.append(FieldProblem(f"{at}.tag", (
                f"multiple definitions for {t.tag!r} (also spec.traffic[{first_by_tag[t.tag]}])")))
        else:
            first_by_tag[t.tag] = i
    if total != 100:
        problems.append(FieldProblem("spec.traffic", f"traffic targets sum to {total}, want 100"))
    return problems


def _validate_target(t: TrafficTarget, at: str, in_service: bool) -> list[FieldProblem]:
    problems = []
    if t.latest_revision is not None and bool(t.revision_name) == t.latest_revision:
        what = "requires revisionName to be empty" if t.latest_revision else "requires revisionName"
        problems.append(FieldProblem(f"{at}.latestRevision", (
            f"latestRevision: {str(t.latest_revision).lower()} {what}")))
    if in_service and t.configuration_name:
        problems.append(FieldProblem(f"{at}.configurationName", (
            "must not be set in a Service, whose traffic always targets its own "
            "configuration; use latestRevision: true or revisionName")))
    elif t.revision_name and t.configuration_name:
        problems.append(FieldProblem(at, (
            "expected exactly one of revisionName, configurationName; got both")))
    elif t.revision_name:
        if reason := qualified_name_problem(t.revision_name):
            problems.append(FieldProblem(f"{at}.revisionName", reason))
    elif t.configuration_name:
        if reason := qualified_name_problem(t.configuration_name):
            problems.append(FieldProblem(f"{at}.configurationName", reason))
    elif not in_service:
        problems.append(FieldProblem(at, (
            "expected exactly one of revisionName, configurationName; got neither")))
    if t.percent is not None and not 0 <= t.percent <= 100:
        problems.append(FieldProblem(f"{at}.percent", f"{t.percent} is outside [0, 100]"))
    if t.url:
        problems.append(FieldProblem(f"{at}.url", (
            "must not be set: the URL is status, computed from the tag")))
    return problems
