"""Queue-proxy configuration from the environment: good and bad environments."""

from __future__ import annotations

import json

import pytest

from queue_proxy.config import (
    PROBE_HTTP,
    PROBE_TCP,
    ConfigError,
    ProbeSpec,
    QueueProxyConfig,
    parse_queue_proxy_config,
    parse_readiness_probes,
)

BASE = {
    "CONTAINER_CONCURRENCY": "10",
    "QUEUE_SERVING_PORT": "8012",
    "USER_PORT": "8080",
    "REVISION_TIMEOUT_SECONDS": "300",
    "SERVING_NAMESPACE": "default",
    "SERVING_CONFIGURATION": "hello",
    "SERVING_REVISION": "hello-00001",
    "SERVING_POD": "hello-00001-deployment-abc",
}


def env(**changes: str | None) -> dict[str, str]:
    """BASE with some variables set (or removed when None)."""
    out = dict(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_minimal_environment_gets_knative_defaults():
    assert parse_queue_proxy_config(BASE) == QueueProxyConfig(
        container_concurrency=10,
        queue_serving_port=8012,
        user_port=8080,
        revision_timeout_s=300.0,
        serving_namespace="default",
        serving_configuration="hello",
        serving_revision="hello-00001",
        serving_pod="hello-00001-deployment-abc",
        readiness_probes=(ProbeSpec(PROBE_TCP, 8080),),
    )


GOOD_CASES = [
    pytest.param(env(CONTAINER_CONCURRENCY="0"), "container_concurrency", 0, id="cc-0-allowed"),
    pytest.param(env(REVISION_TIMEOUT_SECONDS="0"), "revision_timeout_s", 300.0, id="timeout-0-is-default"),
    pytest.param(env(REVISION_RESPONSE_START_TIMEOUT_SECONDS="0"),
                 "revision_response_start_timeout_s", None, id="response-start-0-is-off"),
    pytest.param(env(REVISION_IDLE_TIMEOUT_SECONDS="300"), "revision_idle_timeout_s", 300.0,
                 id="idle-equal-to-total"),
    pytest.param(env(REVISION_RESPONSE_START_TIMEOUT_SECONDS="10"),
                 "revision_response_start_timeout_s", 10.0, id="response-start-set"),
    pytest.param(env(QUEUE_SERVING_TLS_PORT="8112"), "queue_serving_tls_port", 8112, id="tls-port"),
    pytest.param(env(ENABLE_HTTP_FULL_DUPLEX="T"), "enable_http_full_duplex", True, id="go-bool-T"),
    pytest.param(env(ENABLE_MULTI_CONTAINER_PROBES="0"), "enable_multi_container_probes", False,
                 id="go-bool-0"),
    pytest.param(env(QUEUE_DRAIN_QUIET_SECONDS="0.5"), "drain_quiet_s", 0.5, id="drain-fraction"),
    pytest.param(env(QUEUE_ADMIN_ADDRESS="::1"), "queue_admin_address", "::1", id="admin-ipv6"),
    pytest.param(env(QUEUE_STATS_PORT="19090"), "queue_stats_port", 19090, id="stats-port"),
    pytest.param(env(SERVING_SERVICE="hello"), "serving_service", "hello", id="service"),
    pytest.param(env(SERVING_LOGGING_LEVEL="debug"), "serving_logging_level", "debug", id="log-level"),
    pytest.param(env(OBSERVABILITY_CONFIG='{"requestMetrics": {"protocol": "prometheus"}}'),
                 "observability_config", {"requestMetrics": {"protocol": "prometheus"}},
                 id="observability-json"),
    pytest.param(env(SERVING_SERVICE=""), "serving_service", "", id="empty-optional-is-unset"),
]


@pytest.mark.parametrize(("environ", "attr", "want"), GOOD_CASES)
def test_good_environment(environ, attr, want):
    assert getattr(parse_queue_proxy_config(environ), attr) == want


BAD_CASES = [
    pytest.param(env(USER_PORT=None), ["USER_PORT: is required (not set)"], id="missing-user-port"),
    pytest.param(env(SERVING_POD=""), ["SERVING_POD: '' is required (set but empty)"], id="empty-required"),
    pytest.param(env(CONTAINER_CONCURRENCY="-1"),
                 ["CONTAINER_CONCURRENCY: '-1' must be an integer >= 0"], id="negative-cc"),
    pytest.param(env(CONTAINER_CONCURRENCY="1.5"),
                 ["CONTAINER_CONCURRENCY: '1.5' must be an integer >= 0"], id="fractional-cc"),
    pytest.param(env(QUEUE_SERVING_PORT="0"),
                 ["QUEUE_SERVING_PORT: '0' must be an integer in 1-65535"], id="port-zero"),
    pytest.param(env(USER_PORT="70000"), ["USER_PORT: '70000' must be an integer in 1-65535"],
                 id="port-too-big"),
    pytest.param(env(QUEUE_METRICS_PORT="http"),
                 ["QUEUE_METRICS_PORT: 'http' must be an integer in 1-65535"], id="port-name"),
    pytest.param(env(REVISION_TIMEOUT_SECONDS="-5"),
                 ["REVISION_TIMEOUT_SECONDS: '-5' must be an integer >= 0"], id="negative-timeout"),
    pytest.param(env(REVISION_TIMEOUT_SECONDS="60", REVISION_IDLE_TIMEOUT_SECONDS="61"),
                 ["REVISION_IDLE_TIMEOUT_SECONDS: '61' must be <= REVISION_TIMEOUT_SECONDS (60)"],
                 id="idle-over-total"),
    pytest.param(env(REVISION_RESPONSE_START_TIMEOUT_SECONDS="301"),
                 ["REVISION_RESPONSE_START_TIMEOUT_SECONDS: '301' must be <= REVISION_TIMEOUT_SECONDS (300)"],
                 id="response-start-over-total"),
    pytest.param(env(ENABLE_HTTP_FULL_DUPLEX="yes"),
                 ["ENABLE_HTTP_FULL_DUPLEX: 'yes' must be a boolean (true/false/1/0)"], id="bad-bool"),
    pytest.param(env(QUEUE_DRAIN_QUIET_SECONDS="nan"),
                 ["QUEUE_DRAIN_QUIET_SECONDS: 'nan' must be a number of seconds >= 0"], id="drain-nan"),
    pytest.param(env(QUEUE_ADMIN_ADDRESS="localhost"),
                 ["QUEUE_ADMIN_ADDRESS: 'localhost' must be an IP address"], id="admin-not-ip"),
    pytest.param(env(QUEUE_ADMIN_PORT="8012"),
                 ["QUEUE_ADMIN_PORT: '8012' conflicts with QUEUE_SERVING_PORT"], id="port-clash"),
    pytest.param(env(USER_PORT="9090"), ["USER_PORT: '9090' conflicts with QUEUE_STATS_PORT"],
                 id="user-port-clash"),
    pytest.param(env(SERVING_LOGGING_LEVEL="loud"),
                 ["SERVING_LOGGING_LEVEL: 'loud' must be one of debug, dpanic, error, fatal, info, panic, warn"],
                 id="bad-log-level"),
    pytest.param(env(OBSERVABILITY_CONFIG="[1]"),
                 ["OBSERVABILITY_CONFIG: '[1]' must be a JSON object"], id="observability-not-object"),
    pytest.param(env(SERVING_READINESS_PROBE='{"grpc": {"port": 8080}}'),
                 ["SERVING_READINESS_PROBE: grpc: {'port': 8080} gRPC probes are not supported by Surge's queue-proxy"],
                 id="grpc-probe"),
    pytest.param(
        {"USER_PORT": "x", "CONTAINER_CONCURRENCY": "-1"},
        ["CONTAINER_CONCURRENCY: '-1' must be an integer >= 0",
         "QUEUE_SERVING_PORT: is required (not set)",
         "USER_PORT: 'x' must be an integer in 1-65535",
         "REVISION_TIMEOUT_SECONDS: is required (not set)",
         "SERVING_NAMESPACE: is required (not set)",
         "SERVING_CONFIGURATION: is required (not set)",
         "SERVING_REVISION: is required (not set)",
         "SERVING_POD: is required (not set)"],
        id="every-problem-listed-together",
    ),
]


@pytest.mark.parametrize(("environ", "problems"), BAD_CASES)
def test_bad_environment_lists_every_problem(environ, problems):
    with pytest.raises(ConfigError) as exc:
        parse_queue_proxy_config(environ)
    assert exc.value.problems == problems
    assert str(exc.value) == "\n".join(problems)
    assert isinstance(exc.value, ValueError)


PROBE_CASES = [
    pytest.param(None, (ProbeSpec(PROBE_TCP, 8080),), id="default-tcp-on-user-port"),
    pytest.param({"tcpSocket": {"port": 0}}, (ProbeSpec(PROBE_TCP, 8080),), id="tcp-port-0-is-user-port"),
    pytest.param({"tcpSocket": {"port": "8081", "host": "127.0.0.1"}, "periodSeconds": 5},
                 (ProbeSpec(PROBE_TCP, 8081, period_s=5),), id="tcp-numeric-string-port"),
    pytest.param(
        {"httpGet": {"path": "healthz", "port": 8080, "scheme": "https",
                     "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
         "periodSeconds": 3, "timeoutSeconds": 0, "successThreshold": 2, "failureThreshold": 5},
        (ProbeSpec(PROBE_HTTP, 8080, path="/healthz", scheme="HTTPS", http_headers=(("X-Probe", "1"),),
                   period_s=3, timeout_s=1, success_threshold=2, failure_threshold=5),),
        id="http-full",
    ),
    pytest.param({"httpGet": {}}, (ProbeSpec(PROBE_HTTP, 8080),), id="http-defaults"),
    pytest.param({"exec": {"command": ["true"]}}, (ProbeSpec(PROBE_TCP, 8080),), id="exec-becomes-tcp"),
    pytest.param([{"httpGet": {"port": 8080}}, {"tcpSocket": {"port": 9000}}],
                 (ProbeSpec(PROBE_HTTP, 8080), ProbeSpec(PROBE_TCP, 9000)), id="multi-container-list"),
]


@pytest.mark.parametrize(("doc", "want"), PROBE_CASES)
def test_readiness_probe_parsing(doc, want):
    raw = None if doc is None else json.dumps(doc)
    assert parse_readiness_probes(raw, 8080) == want
    assert parse_queue_proxy_config(env(SERVING_READINESS_PROBE=raw)).readiness_probes == want


BAD_PROBE_CASES = [
    pytest.param("{", ["'{' must be JSON (a probe object or a list of them)"], id="not-json"),
    pytest.param("[]", ["[]: must hold at least one probe"], id="empty-list"),
    pytest.param("{}", ["handler: [] needs one of tcpSocket or httpGet"], id="no-handler"),
    pytest.param('{"tcpSocket": {}, "httpGet": {}}',
                 ["tcpSocket/httpGet: ['httpGet', 'tcpSocket'] must set only one handler"], id="two-handlers"),
    pytest.param('{"httpGet": {"port": "http"}}',
                 ["httpGet.port: 'http' named ports are not supported; give a number"], id="named-port"),
    pytest.param('{"tcpSocket": {"port": 70000}}',
                 ["tcpSocket.port: 70000 must be an integer in 1-65535"], id="port-range"),
    pytest.param('{"httpGet": {"scheme": "FTP"}}', ["httpGet.scheme: 'FTP' must be HTTP or HTTPS"],
                 id="bad-scheme"),
    pytest.param('{"httpGet": {"httpHeaders": [{"value": "x"}]}}',
                 ["httpGet.httpHeaders[0]: {'value': 'x'} must be {name, value} strings"], id="header-no-name"),
    pytest.param('{"tcpSocket": {}, "periodSeconds": -1, "timeoutSeconds": "1"}',
                 ["periodSeconds: -1 must be an integer >= 0", "timeoutSeconds: '1' must be an integer >= 0"],
                 id="bad-timings"),
    pytest.param('[{"tcpSocket": {}}, 3]', ["[1].: 3 must be a probe object"], id="list-item-not-object"),
    pytest.param('[{"grpc": {"port": 1}}]',
                 ["[0].grpc: {'port': 1} gRPC probes are not supported by Surge's queue-proxy"],
                 id="grpc-in-list"),
]


@pytest.mark.parametrize(("raw", "problems"), BAD_PROBE_CASES)
def test_bad_readiness_probe(raw, problems):
    with pytest.raises(ConfigError) as exc:
        parse_readiness_probes(raw, 8080)
    assert exc.value.problems == problems


def test_aggressive_mode_is_period_zero():
    assert ProbeSpec(PROBE_TCP, 1).is_aggressive
    assert not ProbeSpec(PROBE_TCP, 1, period_s=1).is_aggressive
