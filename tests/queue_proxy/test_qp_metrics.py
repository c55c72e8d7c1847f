"""Queue-proxy Prometheus metrics, rendered as the metrics port serves them and read back."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from queue_proxy.metrics import RequestMetrics, ResourceLabels, register_metrics, render_exposition

LABELS = ResourceLabels(namespace="default", service="", configuration="hello", revision="hello-00001",
                        pod="hello-pod")
LEGACY = {"namespace_name": "default", "service_name": "unknown", "configuration_name": "hello",
          "revision_name": "hello-00001", "pod_name": "hello-pod", "container_name": "queue-proxy"}
OTEL = {"k8s_namespace_name": "default", "k8s_pod_name": "hello-pod", "k8s_container_name": "queue-proxy",
        "kn_service_name": "", "kn_configuration_name": "hello", "kn_revision_name": "hello-00001"}


def scrape(metrics: RequestMetrics) -> dict[tuple[str, frozenset], float]:
    """Render through a fresh registry and index samples by (name, labels)."""
    registry = CollectorRegistry()
    register_metrics(metrics, registry)
    text = render_exposition(registry).decode()
    # The parser reports a counter's samples as `<family>_total` whatever the text says;
    # test_legacy_counters_are_typed_counter_under_their_bare_names pins the text itself.
    return {
        (family.name if family.type == "counter" else s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def test_app_requests_render_current_and_legacy_names():
    m = RequestMetrics(LABELS, has_queue_depth=True)
    m.record_app_request(200, 0.030)
    m.record_app_request(200, 0.040)  # exactly on the legacy 40 ms boundary
    m.record_app_request(503, 12.0)  # past every current boundary
    got = scrape(m)
    code200 = dict(OTEL, http_response_status_code="200")
    assert got[key("kn_serving_invocation_duration_seconds_bucket", **code200, le="0.025")] == 0
    assert got[key("kn_serving_invocation_duration_seconds_bucket", **code200, le="0.05")] == 2
    assert got[key("kn_serving_invocation_duration_seconds_count", **code200)] == 2
    assert got[key("kn_serving_invocation_duration_seconds_sum", **code200)] == pytest.approx(0.07)
    code503 = dict(OTEL, http_response_status_code="503")
    assert got[key("kn_serving_invocation_duration_seconds_bucket", **code503, le="10.0")] == 0
    assert got[key("kn_serving_invocation_duration_seconds_bucket", **code503, le="+Inf")] == 1
    legacy200 = dict(LEGACY, response_code="200", response_code_class="2xx")
    assert got[key("revision_app_request_count", **legacy200)] == 2
    assert got[key("revision_app_request_latencies_bucket", **legacy200, le="20.0")] == 0
    assert got[key("revision_app_request_latencies_bucket", **legacy200, le="40.0")] == 2
    assert got[key("revision_app_request_latencies_sum", **legacy200)] == pytest.approx(70.0)
    legacy503 = dict(LEGACY, response_code="503", response_code_class="5xx")
    assert got[key("revision_app_request_latencies_bucket", **legacy503, le="20000.0")] == 1
    assert got[key("revision_app_request_latencies_bucket", **legacy503, le="10000.0")] == 0


def test_requests_carry_route_tag():
    m = RequestMetrics(LABELS, has_queue_depth=False)
    m.record_request(200, "canary", 0.2)
    m.record_request(200, "", 0.2)
    m.record_request(200, "", 0.3)
    got = scrape(m)
    tagged = dict(LEGACY, response_code="200", response_code_class="2xx", route_tag="canary")
    untagged = dict(tagged, route_tag="")
    assert got[key("revision_request_count", **tagged)] == 1
    assert got[key("revision_request_count", **untagged)] == 2
    assert got[key("revision_request_latencies_bucket", **untagged, le="250.0")] == 1
    assert got[key("revision_request_latencies_bucket", **untagged, le="300.0")] == 2
    server = dict(OTEL, http_response_status_code="200", kn_route_tag="canary")
    assert got[key("http_server_request_duration_seconds_count", **server)] == 1


QUEUE_DEPTH_CASES = [
    pytest.param(True, 7, 7.0, id="cc-positive-reports-depth"),
    pytest.param(False, 7, None, id="cc-zero-no-depth-series"),
]


@pytest.mark.parametrize(("has_depth", "depth", "want"), QUEUE_DEPTH_CASES)
def test_queue_depth_gauge(has_depth, depth, want):
    m = RequestMetrics(LABELS, has_queue_depth=has_depth)
    m.set_queue_depth(depth)
    got = scrape(m)
    assert got.get(key("kn_serving_queue_depth", **OTEL)) == want
    assert got.get(key("revision_queue_depth", **LEGACY)) == want


def test_nothing_recorded_renders_no_request_series():
    got = scrape(RequestMetrics(LABELS, has_queue_depth=False))
    assert got == {}


def test_collector_uses_only_the_registry_passed_in():
    from prometheus_client import REGISTRY

    m = RequestMetrics(LABELS, has_queue_depth=True)
    m.record_app_request(200, 0.01)
    scrape(m)
    assert REGISTRY.get_sample_value("revision_queue_depth", LEGACY) is None


def test_legacy_counters_are_typed_counter_under_their_bare_names():
    m = RequestMetrics(LABELS, has_queue_depth=True)
    m.record_request(200, "", 0.01)
    m.record_request(200, "", 0.02)
    m.record_app_request(200, 0.01)
    registry = CollectorRegistry()
    register_metrics(m, registry)
    lines = render_exposition(registry).decode().splitlines()
    for name in ("revision_request_count", "revision_app_request_count"):
        assert f"# TYPE {name} counter" in lines
        assert any(line.startswith(f"# HELP {name} ") for line in lines)
        samples = [line for line in lines if line.startswith(name)]
        assert len(samples) == 1 and samples[0].startswith(name + "{")
        assert samples[0].endswith(" 2.0" if name == "revision_request_count" else " 1.0")
    assert not any("_total" in line for line in lines)
    types = {line.split()[2]: line.split()[3] for line in lines if line.startswith("# TYPE")}
    assert types == {
        "http_server_request_duration_seconds": "histogram",
        "kn_serving_invocation_duration_seconds": "histogram",
        "revision_request_count": "counter",
        "revision_request_latencies": "histogram",
        "revision_app_request_count": "counter",
        "revision_app_request_latencies": "histogram",
        "kn_serving_queue_depth": "gauge",
        "revision_queue_depth": "gauge",
    }
