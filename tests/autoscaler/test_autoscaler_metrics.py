"""The autoscaler's Prometheus gauges: legacy and OTel names, labels, metric-specific values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.config import ScalingSpec
from autoscaler.metrics import AutoscalerMetrics
from autoscaler.multiscaler import Multiscaler, RevisionSnapshot
from dataplane.clock import FakeClock
from dataplane.stat import Stat
from dataplane.types import RevisionKey

KEY = RevisionKey("default", "hello-00001")


def snapshot(**overrides) -> RevisionSnapshot:
    values = dict(key=KEY, service_name="hello", configuration_name="hello-cfg",
                  metric="concurrency", decided=True, desired_pods=3,
                  excess_burst_capacity=-111, panic=True, stable_value=12.5,
                  panic_value=20.0, target_value=7.0, ready_pods=2)
    return RevisionSnapshot(**(values | overrides))


class Source:
    def __init__(self, snapshots: list[RevisionSnapshot]) -> None:
        self.items = snapshots

    def snapshots(self) -> list[RevisionSnapshot]:
        return self.items


def scrape(source) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    AutoscalerMetrics(source, registry)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


LEGACY = (("configuration_name", "hello-cfg"), ("namespace_name", "default"),
          ("revision_name", "hello-00001"), ("service_name", "hello"))
OTEL = (("k8s_namespace_name", "default"), ("kn_configuration_name", "hello-cfg"),
        ("kn_revision_name", "hello-00001"), ("kn_service_name", "hello"))

CONCURRENCY_SAMPLES = {
    ("autoscaler_desired_pods", LEGACY): 3, ("kn_revision_pods_desired", OTEL): 3,
    ("autoscaler_excess_burst_capacity", LEGACY): -111,
    ("kn_revision_capacity_excess", OTEL): -111,
    ("autoscaler_panic_mode", LEGACY): 1, ("kn_revision_panic_mode", OTEL): 1,
    ("autoscaler_stable_request_concurrency", LEGACY): 12.5,
    ("kn_revision_concurrency_stable", OTEL): 12.5,
    ("autoscaler_panic_request_concurrency", LEGACY): 20.0,
    ("kn_revision_concurrency_panic", OTEL): 20.0,
    ("autoscaler_target_concurrency_per_pod", LEGACY): 7.0,
    ("kn_revision_concurrency_target", OTEL): 7.0,
    ("autoscaler_actual_pods", LEGACY): 2,
}
RPS_SAMPLES = {
    k: v for k, v in CONCURRENCY_SAMPLES.items()
    if "concurrency" not in k[0]
} | {
    ("autoscaler_stable_requests_per_second", LEGACY): 12.5,
    ("kn_revision_rps_stable", OTEL): 12.5,
    ("autoscaler_panic_requests_per_second", LEGACY): 20.0,
    ("kn_revision_rps_panic", OTEL): 20.0,
    ("autoscaler_target_requests_per_second", LEGACY): 7.0,
    ("kn_revision_rps_target", OTEL): 7.0,
}
UNKNOWN_LEGACY = (("configuration_name", "unknown"), ("namespace_name", "default"),
                  ("revision_name", "hello-00001"), ("service_name", "unknown"))

# (snapshots, samples wanted, whether those are all the samples rendered)
CASES = [
    pytest.param([snapshot()], CONCURRENCY_SAMPLES, True, id="concurrency-revision"),
    pytest.param([snapshot(metric="rps")], RPS_SAMPLES, True, id="rps-revision-only-rps-gauges"),
    pytest.param([snapshot(decided=False)], {}, True, id="undecided-revision-not-shown"),
    pytest.param([], {}, True, id="no-revisions"),
    pytest.param(
        [snapshot(service_name="", configuration_name="", panic=False)],
        {("autoscaler_panic_mode", UNKNOWN_LEGACY): 0},
        False,
        id="empty-legacy-labels-read-unknown",
    ),
]


@pytest.mark.parametrize(("snapshots", "want", "exact"), CASES)
def test_gauges_per_revision(snapshots, want, exact) -> None:
    got = scrape(Source(snapshots))
    if exact:
        assert got == want
    else:
        assert {k: got.get(k) for k in want} == want


def test_rendered_at_scrape_time_from_a_live_multiscaler() -> None:
    clock = FakeClock()
    ms = Multiscaler(clock=clock, on_decision=lambda key, d: None)
    ms.watch(KEY, ScalingSpec(target_value=7.0, total_value=10.0), panic_window_s=6.0,
             pods=lambda: [], service_name="hello", configuration_name="hello-cfg")
    registry = CollectorRegistry()
    AutoscalerMetrics(ms, registry)
    assert registry.get_sample_value("kn_revision_pods_desired", dict(OTEL)) is None
    ms.ingest(KEY, Stat("activator-0", 15.0), clock.now())   # poke: 0 -> desired 3
    assert registry.get_sample_value("autoscaler_desired_pods", dict(LEGACY)) == 3
    assert registry.get_sample_value("kn_revision_concurrency_stable", dict(OTEL)) == 15.0


def test_registering_does_not_touch_the_global_registry() -> None:
    from prometheus_client import REGISTRY

    assert scrape(Source([snapshot()]))[("autoscaler_desired_pods", LEGACY)] == 3
    assert REGISTRY.get_sample_value("autoscaler_desired_pods", dict(LEGACY)) is None
