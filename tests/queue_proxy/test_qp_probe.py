"""Probe classification and the exact local responses of the queue-proxy."""

from __future__ import annotations

import pytest

from queue_proxy.probe import LocalResponse, ProbeKind, classify_request, local_response, needs_readiness

TEXT = (("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff"))

CLASSIFY_CASES = [
    # (User-Agent, K-Kubelet-Probe, K-Network-Probe, kind)
    pytest.param("kube-probe/1.31", None, "queue", ProbeKind.HEALTH, id="kubelet"),
    pytest.param("curl/8", "queue", None, ProbeKind.HEALTH, id="kubelet-header"),
    pytest.param("Knative-Activator-Probe", None, "queue", ProbeKind.HEALTH, id="activator-probe"),
    pytest.param("Knative-Autoscaling-Probe/1", None, None, ProbeKind.HEALTH, id="autoscaling-probe"),
    pytest.param(None, None, "queue", ProbeKind.HEALTH, id="bare-queue-probe"),
    pytest.param("kube-probe/1.31", None, "probe", ProbeKind.HEALTH, id="kubelet-wins-over-network"),
    pytest.param("Go-http-client/1.1", None, "probe", ProbeKind.NETWORK, id="network-probe"),
    pytest.param("Knative-Ingress-Probe", None, "probe", ProbeKind.NETWORK, id="ingress-probe"),
    pytest.param("curl/8", None, None, ProbeKind.NONE, id="ordinary"),
    pytest.param("Kube-probe/1.31", None, None, ProbeKind.NONE, id="ua-is-case-sensitive"),
    pytest.param("curl/8", "", None, ProbeKind.NONE, id="empty-kubelet-header-ignored"),
    pytest.param("curl/8", None, "activator", ProbeKind.NONE, id="other-network-value-proxied"),
]


@pytest.mark.parametrize(("ua", "kubelet", "network", "want"), CLASSIFY_CASES)
def test_classify_request(ua, kubelet, network, want):
    assert classify_request(ua, kubelet, network) is want


RESPONSE_CASES = [
    # (kind, K-Network-Probe, K-Network-Hash, is_ready, is_draining, response)
    pytest.param(ProbeKind.NONE, None, None, None, True, None, id="ordinary-not-answered"),
    pytest.param(ProbeKind.HEALTH, "queue", None, True, False,
                 LocalResponse(200, b"queue", (("Content-Type", "text/plain; charset=utf-8"),)),
                 id="health-ready-200-queue"),
    pytest.param(ProbeKind.HEALTH, "queue", None, False, False, LocalResponse(503), id="health-not-ready-503"),
    pytest.param(ProbeKind.HEALTH, "queue", None, None, True,
                 LocalResponse(503, b"shutting down\n", TEXT), id="health-draining-503"),
    pytest.param(ProbeKind.HEALTH, "activator", None, None, False,
                 LocalResponse(400, b"unexpected probe header value: activator\n", TEXT),
                 id="health-wrong-value-400"),
    pytest.param(ProbeKind.HEALTH, None, None, None, False,
                 LocalResponse(400, b"unexpected probe header value: \n", TEXT), id="health-missing-value-400"),
    pytest.param(ProbeKind.NETWORK, "probe", "abc", None, False,
                 LocalResponse(200, b"", (("K-Network-Hash", "abc"),)), id="network-echoes-hash"),
    pytest.param(ProbeKind.NETWORK, "probe", "", None, False,
                 LocalResponse(400, b'a probe request must contain a non-empty "K-Network-Hash" header\n', TEXT),
                 id="network-missing-hash-400"),
    pytest.param(ProbeKind.NETWORK, "probe", "abc", None, True,
                 LocalResponse(503, b"shutting down\n", TEXT), id="network-draining-503"),
]


@pytest.mark.parametrize(("kind", "network", "hash_", "ready", "draining", "want"), RESPONSE_CASES)
def test_local_response(kind, network, hash_, ready, draining, want):
    assert needs_readiness(kind, network, draining) is (ready is not None)
    got = local_response(kind, network_probe=network, network_hash=hash_, is_ready=ready, is_draining=draining)
    assert got == want


def test_health_answer_without_readiness_is_a_caller_bug():
    with pytest.raises(ValueError):
        local_response(ProbeKind.HEALTH, network_probe="queue", network_hash=None, is_ready=None,
                       is_draining=False)
