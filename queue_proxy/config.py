"""The queue-proxy's configuration, read once from the environment (reference 4.2).

Knative's queue-proxy (`pkg/queue/sharedmain/main.go`) reads these variables; Surge reads
the same names with the same meaning, plus a few of its own. What differs, and why:

- Required (present and non-empty): CONTAINER_CONCURRENCY, QUEUE_SERVING_PORT, USER_PORT,
  REVISION_TIMEOUT_SECONDS, SERVING_NAMESPACE, SERVING_CONFIGURATION, SERVING_REVISION,
  SERVING_POD. Without them the sidecar cannot limit, listen, proxy, time out or label.
- Required by Knative but optional here:
  - QUEUE_SERVING_TLS_PORT: Surge's queue-proxy does not terminate TLS; the value is
    validated when given and otherwise None.
  - SERVING_LOGGING_CONFIG (default "") and SERVING_LOGGING_LEVEL (default "info"):
    Surge logs through the standard library, not a zap JSON config.
  - SERVING_POD_IP (default ""): local pods share 127.0.0.1; only labels use it.
- REVISION_TIMEOUT_SECONDS = 0 means the revision default, 300 s, as Knative's revision
  defaulting does (Knative's queue-proxy itself would time every request out at once).
- REVISION_RESPONSE_START_TIMEOUT_SECONDS / REVISION_IDLE_TIMEOUT_SECONDS: 0 or absent
  is off (None); when set they must not exceed the total timeout.
- SERVING_READINESS_PROBE: one Kubernetes probe object or a list of them (Knative sends a
  list when ENABLE_MULTI_CONTAINER_PROBES is on; we accept either shape always). Absent
  means Knative's default: a TCP probe of USER_PORT. `exec` probes run in the kubelet, so
  (as Knative's controller does) they become a TCP probe of USER_PORT; `grpc` is refused.
- Booleans use Go's `strconv.ParseBool` spellings (1/t/true/TRUE/True, 0/f/false/...).
- Surge additions: QUEUE_ADMIN_PORT (8022), QUEUE_STATS_PORT (9090), QUEUE_METRICS_PORT
  (9091), QUEUE_DRAIN_QUIET_SECONDS (30, Knative's drain quiet period),
  QUEUE_ADMIN_ADDRESS (127.0.0.1). The queue-proxy's own ports and USER_PORT must differ.

Every problem is collected and raised together as `ConfigError`, one per line, as
`NAME: value rule`, e.g. `USER_PORT: '0' must be an integer in 1-65535`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "ConfigError",
    "PROBE_HTTP",
    "PROBE_TCP",
    "ProbeSpec",
    "QueueProxyConfig",
    "parse_queue_proxy_config",
    "parse_readiness_probes",
]

# Knative's revision default timeoutSeconds (config-defaults `revision-timeout-seconds`).
DEFAULT_REVISION_TIMEOUT_S = 300.0
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_LOG_LEVELS = frozenset({"debug", "info", "warn", "error", "dpanic", "panic", "fatal"})


class ConfigError(ValueError):
    """The environment is not a valid queue-proxy configuration; one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class QueueProxyConfig:
    """Everything the queue-proxy daemon needs, parsed and validated."""

    container_concurrency: int
    queue_serving_port: int
    user_port: int
    revision_timeout_s: float
    serving_namespace: str
    serving_configuration: str
    serving_revision: str
    serving_pod: str
    readiness_probes: tuple[ProbeSpec, ...] = ()
    revision_response_start_timeout_s: float | None = None
    revision_idle_timeout_s: float | None = None
    queue_serving_tls_port: int | None = None
    serving_service: str = ""
    serving_pod_ip: str = ""
    serving_logging_config: str = ""
    serving_logging_level: str = "info"
    enable_http_full_duplex: bool = False
    enable_http2_auto_detection: bool = False
    enable_multi_container_probes: bool = False
    observability_config: Mapping[str, Any] = field(default_factory=dict)
    queue_admin_port: int = 8022
    queue_stats_port: int = 9090
    queue_metrics_port: int = 9091
    queue_admin_address: str = "127.0.0.1"
    drain_quiet_s: float = 30.0


PROBE_TCP = "tcp"
PROBE_HTTP = "http"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One readiness probe of a user container (Kubernetes probe shape, Knative defaults).

    `period_s == 0` is Knative's aggressive mode (retry every 50 ms for up to 10 s);
    otherwise one attempt with `timeout_s` per call.
    """

    kind: str  # PROBE_TCP or PROBE_HTTP
    port: int
    host: str = "127.0.0.1"
    path: str = "/"
    scheme: str = "HTTP"  # or "HTTPS" (certificate not verified, as kubelet does)
    http_headers: tuple[tuple[str, str], ...] = ()
    period_s: int = 0
    timeout_s: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    @property
    def is_aggressive(self) -> bool:
        """True when Knative probes this aggressively (periodSeconds 0)."""
        return self.period_s == 0


def parse_readiness_probes(raw: str | None, user_port: int) -> tuple[ProbeSpec, ...]:
    """SERVING_READINESS_PROBE (an object or a list) as probe specs; None gives TCP on the user port.

    Raises `ConfigError` whose problems read `path: value rule`.
    """
    if raw is None:
        return (ProbeSpec(PROBE_TCP, user_port),)
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConfigError([f"{raw!r} must be JSON (a probe object or a list of them)"]) from None
    problems: list[str] = []
    if isinstance(doc, list):
        if not doc:
            problems.append("[]: must hold at least one probe")
        specs = [_probe(item, f"[{i}].", user_port, problems) for i, item in enumerate(doc)]
    else:
        specs = [_probe(doc, "", user_port, problems)]
    if problems:
        raise ConfigError(problems)
    return tuple(s for s in specs if s is not None)


def _probe(doc: Any, at: str, user_port: int, problems: list[str]) -> ProbeSpec | None:
    if not isinstance(doc, dict):
        problems.append(f"{at or '.'}: {doc!r} must be a probe object")
        return None
    handlers = [k for k in ("tcpSocket", "httpGet", "exec", "grpc") if doc.get(k) is not None]
    timing = {}
    for key, name, default in (("periodSeconds", "period_s", 0), ("timeoutSeconds", "timeout_s", 0),
                               ("successThreshold", "success_threshold", 0),
                               ("failureThreshold", "failure_threshold", 0)):
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{at}{key}: {value!r} must be an integer >= 0")
            value = default
        timing[name] = value
    # Go's JSON drops zero values, so 0 reads as "unset": Kubernetes/Knative defaults apply.
    timing["success_threshold"] = timing["success_threshold"] or 1
    timing["failure_threshold"] = timing["failure_threshold"] or 3
    timing["timeout_s"] = max(timing["timeout_s"], 1)
    if len(handlers) != 1:
        rule = "needs one of tcpSocket or httpGet" if not handlers else "must set only one handler"
        problems.append(f"{at}{'/'.join(handlers) or 'handler'}: {sorted(handlers)!r} {rule}")
        return None
    kind = handlers[0]
    action = doc[kind]
    if kind == "grpc":
        problems.append(f"{at}grpc: {action!r} gRPC probes are not supported by Surge's queue-proxy")
        return None
    if kind == "exec":
        # Exec probes stay with the kubelet; Knative's controller gives the queue-proxy a
        # TCP probe of the user port instead, and so do we.
        return ProbeSpec(PROBE_TCP, user_port, **timing)
    if not isinstance(action, dict):
        problems.append(f"{at}{kind}: {action!r} must be an object")
        return None
    port = _probe_port(action.get("port"), f"{at}{kind}.port", user_port, problems)
    host = action.get("host") or "127.0.0.1"
    if not isinstance(host, str):
        problems.append(f"{at}{kind}.host: {host!r} must be a string")
    if kind == "tcpSocket":
        return ProbeSpec(PROBE_TCP, port, host=str(host), **timing)
    path = action.get("path") or "/"
    scheme = action.get("scheme") or "HTTP"
    if not isinstance(path, str):
        problems.append(f"{at}httpGet.path: {path!r} must be a string")
        path = "/"
    if not isinstance(scheme, str) or scheme.upper() not in ("HTTP", "HTTPS"):
        problems.append(f"{at}httpGet.scheme: {scheme!r} must be HTTP or HTTPS")
        scheme = "HTTP"
    headers: list[tuple[str, str]] = []
    for i, header in enumerate(action.get("httpHeaders") or []):
        name = header.get("name") if isinstance(header, dict) else None
        value = header.get("value", "") if isinstance(header, dict) else None
        if not isinstance(name, str) or not name or not isinstance(value, str):
            problems.append(f"{at}httpGet.httpHeaders[{i}]: {header!r} must be {{name, value}} strings")
            continue
        headers.append((name, value))
    return ProbeSpec(
        PROBE_HTTP, port, host=str(host), path="/" + path.lstrip("/"), scheme=scheme.upper(),
        http_headers=tuple(headers), **timing,
    )


def _probe_port(value: Any, at: str, user_port: int, problems: list[str]) -> int:
    if value is None or value == 0 or value == "":
        return user_port  # Knative points the probe at the user port
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        rule = "named ports are not supported; give a number" if isinstance(value, str) else \
            "must be an integer in 1-65535"
        problems.append(f"{at}: {value!r} {rule}")
        return user_port
    return value


class _Reader:
    """Pulls typed values out of the environment, noting every problem."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.problems: list[str] = []

    def raw(self, name: str, required: bool) -> str | None:
        value = self.env.get(name)
        if value is None or value == "":
            if required:
                # "None" would read as a value; say plainly whether it is unset or empty.
                self.problems.append(f"{name}: is required (not set)" if value is None
                                     else f"{name}: '' is required (set but empty)")
            return None
        return value

    def check(self, name: str, value: str, parse: Callable[[str], Any], rule: str) -> Any:
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}: {value!r} {rule}")
            return None

    def port(self, name: str, required: bool = False, default: int | None = None) -> int | None:
        value = self.raw(name, required)
        if value is None:
            return default
        return self.check(name, value, _port, "must be an integer in 1-65535")

    def int_at_least(self, name: str, low: int, required: bool = False, default: int = 0) -> int | None:
        value = self.raw(name, required)
        if value is None:
            return None if required else default
        return self.check(name, value, lambda v: _int_at_least(v, low), f"must be an integer >= {low}")

    def boolean(self, name: str) -> bool:
        value = self.raw(name, False)
        if value is None:
            return False
        return bool(self.check(name, value, _go_bool, "must be a boolean (true/false/1/0)"))

    def text(self, name: str, required: bool = False, default: str = "") -> str:
        value = self.raw(name, required)
        return default if value is None else value


def parse_queue_proxy_config(environ: Mapping[str, str]) -> QueueProxyConfig:
    """Read and validate the queue-proxy environment; raises `ConfigError` listing all problems."""
    r = _Reader(environ)
    cc = r.int_at_least("CONTAINER_CONCURRENCY", 0, required=True)
    serving_port = r.port("QUEUE_SERVING_PORT", required=True)
    user_port = r.port("USER_PORT", required=True)
    total = r.int_at_least("REVISION_TIMEOUT_SECONDS", 0, required=True)
    start = r.int_at_least("REVISION_RESPONSE_START_TIMEOUT_SECONDS", 0)
    idle = r.int_at_least("REVISION_IDLE_TIMEOUT_SECONDS", 0)
    total_s = float(total) if total else DEFAULT_REVISION_TIMEOUT_S
    for name, value in (("REVISION_RESPONSE_START_TIMEOUT_SECONDS", start),
                        ("REVISION_IDLE_TIMEOUT_SECONDS", idle)):
        if value and value > total_s:
            r.problems.append(
                f"{name}: '{value}' must be <= REVISION_TIMEOUT_SECONDS ({total_s:g})"
            )
    level = r.text("SERVING_LOGGING_LEVEL", default="info")
    if level not in _LOG_LEVELS:
        r.problems.append(f"SERVING_LOGGING_LEVEL: {level!r} must be one of {', '.join(sorted(_LOG_LEVELS))}")
    observability = _parse_observability(r)
    admin_address = r.text("QUEUE_ADMIN_ADDRESS", default="127.0.0.1")
    try:
        ipaddress.ip_address(admin_address)
    except ValueError:
        r.problems.append(f"QUEUE_ADMIN_ADDRESS: {admin_address!r} must be an IP address")
    drain_raw = r.raw("QUEUE_DRAIN_QUIET_SECONDS", False)
    drain_s = 30.0
    if drain_raw is not None:
        drain_s = r.check("QUEUE_DRAIN_QUIET_SECONDS", drain_raw, _non_negative_seconds,
                          "must be a number of seconds >= 0")
    ports = {
        "QUEUE_SERVING_PORT": serving_port,
        "QUEUE_SERVING_TLS_PORT": r.port("QUEUE_SERVING_TLS_PORT"),
        "QUEUE_ADMIN_PORT": r.port("QUEUE_ADMIN_PORT", default=8022),
        "QUEUE_STATS_PORT": r.port("QUEUE_STATS_PORT", default=9090),
        "QUEUE_METRICS_PORT": r.port("QUEUE_METRICS_PORT", default=9091),
    }
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port is None:
            continue
        if port in seen:
            r.problems.append(f"{name}: '{port}' conflicts with {seen[port]}")
        seen.setdefault(port, name)
    if user_port is not None and user_port in seen:
        r.problems.append(f"USER_PORT: '{user_port}' conflicts with {seen[user_port]}")
    probes: tuple[ProbeSpec, ...] = ()
    if user_port is not None:
        try:
            probes = parse_readiness_probes(r.raw("SERVING_READINESS_PROBE", False), user_port)
        except ConfigError as exc:
            r.problems.extend(f"SERVING_READINESS_PROBE: {p}" for p in exc.problems)
    fields = dict(
        serving_namespace=r.text("SERVING_NAMESPACE", required=True),
        serving_configuration=r.text("SERVING_CONFIGURATION", required=True),
        serving_revision=r.text("SERVING_REVISION", required=True),
        serving_pod=r.text("SERVING_POD", required=True),
        serving_service=r.text("SERVING_SERVICE"),
        serving_pod_ip=r.text("SERVING_POD_IP"),
        serving_logging_config=r.text("SERVING_LOGGING_CONFIG"),
        enable_http_full_duplex=r.boolean("ENABLE_HTTP_FULL_DUPLEX"),
        enable_http2_auto_detection=r.boolean("ENABLE_HTTP2_AUTO_DETECTION"),
        enable_multi_container_probes=r.boolean("ENABLE_MULTI_CONTAINER_PROBES"),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return QueueProxyConfig(
        container_concurrency=cc,
        queue_serving_port=serving_port,
        user_port=user_port,
        revision_timeout_s=total_s,
        revision_response_start_timeout_s=float(start) if start else None,
        revision_idle_timeout_s=float(idle) if idle else None,
        readiness_probes=probes,
        queue_serving_tls_port=ports["QUEUE_SERVING_TLS_PORT"],
        serving_logging_level=level,
        observability_config=observability,
        queue_admin_port=ports["QUEUE_ADMIN_PORT"],
        queue_stats_port=ports["QUEUE_STATS_PORT"],
        queue_metrics_port=ports["QUEUE_METRICS_PORT"],
        queue_admin_address=admin_address,
        drain_quiet_s=drain_s,
        **fields,
    )


def _parse_observability(r: _Reader) -> Mapping[str, Any]:
    raw = r.raw("OBSERVABILITY_CONFIG", False)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        r.problems.append(f"OBSERVABILITY_CONFIG: {raw!r} must be a JSON object")
        return {}
    return MappingProxyType(value)


def _decimal(value: str) -> int:
    # Decimal digits only: int() would also take "1_000" and surrounding spaces.
    text = value[1:] if value[:1] in "+-" else value
    if not text.isascii() or not text.isdigit():
        raise ValueError(value)
    return int(value)


def _port(value: str) -> int:
    port = _decimal(value)
    if not 1 <= port <= 65535:
        raise ValueError(value)
    return port


def _int_at_least(value: str, low: int) -> int:
    number = _decimal(value)
    if number < low:
        raise ValueError(value)
    return number


def _non_negative_seconds(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0 or seconds == float("inf"):  # also refuses NaN
        raise ValueError(value)
    return seconds


def _go_bool(value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ValueError(value)
