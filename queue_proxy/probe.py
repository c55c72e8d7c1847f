"""Which requests the queue-proxy answers itself, and with exactly what (reference 4.3, 4.6).

Knative's drainer (knative/pkg `network/handlers/drain.go`) and health handler
(`pkg/queue/health/handler.go`) sit in front of everything else. Decision table, first
match wins, on *any* path:

    kind      recognised by                                     draining  not draining
    HEALTH    User-Agent `kube-probe/...`, any `K-Kubelet-Probe`,  503       K-Network-Probe != queue: 400
              User-Agent `Knative-Activator-Probe...` or          shutting  user probe fails: 503 (no body)
              `Knative-Autoscaling-Probe...`, `K-Network-Probe:   down      user probe passes: 200 `queue`
              queue`
    NETWORK   `K-Network-Probe: probe`                            503       200 echoing K-Network-Hash,
                                                                  shutting  400 if the hash is missing
                                                                  down
    NONE      anything else: proxy it (and restart the drain quiet timer)

Surge also treats a bare `K-Network-Probe: queue` (no kubelet User-Agent) as a health
check; Knative would forward it to the user container, which cannot mean anything useful.
Other `K-Network-Probe` values on ordinary requests are proxied, as in Knative; on a
health check they get 400 `unexpected probe header value: <value>`.

Error bodies are Go's `http.Error` output (the text plus a newline, `text/plain`,
`nosniff`) so clients that compared against Knative see the same bytes.
Example: a kubelet probe with `K-Network-Probe: queue` while the user container is ready
gets `LocalResponse(200, b"queue", ...)`; the same probe during a drain gets
`LocalResponse(503, b"shutting down\\n", ...)`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "HASH_HEADER",
    "HEALTH_UA_PREFIXES",
    "KUBELET_PROBE_HEADER",
    "LocalResponse",
    "NETWORK_PROBE_HEADER",
    "ProbeKind",
    "classify_request",
    "local_response",
    "needs_readiness",
]

NETWORK_PROBE_HEADER = "K-Network-Probe"
HASH_HEADER = "K-Network-Hash"
KUBELET_PROBE_HEADER = "K-Kubelet-Probe"
# The drainer's extra health-check User-Agent prefixes (sharedmain/handlers.go).
HEALTH_UA_PREFIXES = ("kube-probe/", "Knative-Activator-Probe", "Knative-Autoscaling-Probe")
_QUEUE = "queue"
_PROBE = "probe"


class ProbeKind(enum.Enum):
    """How the queue-proxy treats a request head."""

    NONE = "none"  # an ordinary request: proxy it
    HEALTH = "health"  # a health check: answer locally from readiness and drain state
    NETWORK = "network"  # `K-Network-Probe: probe`: echo the hash


@dataclass(frozen=True, slots=True)
class LocalResponse:
    """A response the queue-proxy writes itself."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


_TEXT_HEADERS = (("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff"))


def _go_error(status: int, text: str) -> LocalResponse:
    return LocalResponse(status, (text + "\n").encode(), _TEXT_HEADERS)


SHUTTING_DOWN = _go_error(503, "shutting down")
READY = LocalResponse(200, b"queue", (("Content-Type", "text/plain; charset=utf-8"),))
NOT_READY = LocalResponse(503)
MISSING_HASH = _go_error(400, f'a probe request must contain a non-empty "{HASH_HEADER}" header')


def classify_request(
    user_agent: str | None, kubelet_probe: str | None, network_probe: str | None
) -> ProbeKind:
    """Classify a request by its User-Agent, K-Kubelet-Probe and K-Network-Probe values."""
    if kubelet_probe or network_probe == _QUEUE:
        return ProbeKind.HEALTH
    if user_agent and user_agent.startswith(HEALTH_UA_PREFIXES):
        return ProbeKind.HEALTH
    if network_probe == _PROBE:
        return ProbeKind.NETWORK
    return ProbeKind.NONE


def needs_readiness(kind: ProbeKind, network_probe: str | None, is_draining: bool) -> bool:
    """True when answering needs the user container's readiness (probe it first)."""
    return kind is ProbeKind.HEALTH and not is_draining and network_probe == _QUEUE


def local_response(
    kind: ProbeKind,
    *,
    network_probe: str | None,
    network_hash: str | None,
    is_ready: bool | None,
    is_draining: bool,
) -> LocalResponse | None:
    """The exact local answer for a probe, or None for an ordinary request.

    `is_ready` is only read when `needs_readiness(...)` is true; pass None otherwise.
    """
    if kind is ProbeKind.NONE:
        return None
    if is_draining:
        return SHUTTING_DOWN
    if kind is ProbeKind.NETWORK:
        if not network_hash:
            return MISSING_HASH
        return LocalResponse(200, b"", ((HASH_HEADER, network_hash),))
    if network_probe != _QUEUE:
        return _go_error(400, "unexpected probe header value: " + (network_probe or ""))
    if is_ready is None:
        raise ValueError("a health check needs is_ready (see needs_readiness)")
    return READY if is_ready else NOT_READY
