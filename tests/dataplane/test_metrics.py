"""dataplane.metrics: Knative's buckets and the legacy counters' bare names in the text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from dataplane.metrics import LATENCY_BUCKETS_S, LEGACY_LATENCY_BUCKETS_MS, render_exposition


def registry_with(*names: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    for name in names:
        Counter(name, f"{name} help", registry=registry).inc(3)
    return registry


CASES = [
    pytest.param(("revision_request_count",), ("revision_request_count",),
                 ["# HELP revision_request_count revision_request_count help",
                  "# TYPE revision_request_count counter"], id="legacy-renamed"),
    pytest.param(("kn_errors",), (),
                 ["# HELP kn_errors_total kn_errors help", "# TYPE kn_errors_total counter"],
                 id="others-keep-total"),
    pytest.param(("a_count", "b_count"), ("a_count",),
                 ["# TYPE a_count counter", "# TYPE b_count_total counter"], id="only-listed"),
]


@pytest.mark.parametrize(("counters", "legacy", "want_lines"), CASES)
def test_render_exposition_titles_legacy_counters_by_their_bare_names(counters, legacy,
                                                                       want_lines):
    lines = render_exposition(registry_with(*counters), legacy).decode().splitlines()
    for line in want_lines:
        assert line in lines
    # Samples are untouched: prometheus_client writes counters as `<name>_total`.
    for name in counters:
        assert f"{name}_total 3.0" in lines


def test_buckets_are_knatives():
    assert LATENCY_BUCKETS_S[0] == 0.005 and LATENCY_BUCKETS_S[-1] == 10.0
    assert len(LEGACY_LATENCY_BUCKETS_MS) == 26
    assert list(LEGACY_LATENCY_BUCKETS_MS) == sorted(LEGACY_LATENCY_BUCKETS_MS)
