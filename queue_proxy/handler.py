"""The queue-proxy's request handler: the policy the proxy engine asks about every request.

Theory of operation. Knative's queue-proxy is a chain of Go handlers (reference 4.3);
here the chain is flattened into the engine's two hooks, in the same order:

    begin(head):
      1. probes (any path)   classify by User-Agent / K-Kubelet-Probe / K-Network-Probe;
                             answer locally: health -> readiness (or 503 `shutting down`
                             while draining), `K-Network-Probe: probe` -> hash echo.
                             Never counted, never forwarded.
      2. drain               any other request restarts the drain quiet timer.
      3. stats in            before the breaker, so queued requests are load (3.2).
      4. route tag, headers  label from Knative-Serving-Tag/-Default-Route (section 6);
                             K-Original-Host -> Host; Knative-Serving-Revision/-Namespace
                             stripped. (The Forwarded shim is the engine's, switched on.)
      5. breaker             a free slot -> forward now; queue full -> 503 `pending
                             request queue full` at once; else park on a breaker future
                             (no task), bounded by the revision timeouts from arrival.
                             Passing it samples the queue-depth gauge (itself included).
    finish(head, outcome):   exactly once per begun request: release the slot, stats
                             out, request metrics (queue wait included) and app metrics
                             (from admission on, queue wait excluded).

Worked example, containerConcurrency 1 (1 executing, a queue of 10): requests A..L
arrive together. A takes the slot and is forwarded; B..K park (11 in flight, stats
concurrency 11); L finds executing + waiting = 11 and gets the canned 503 at once (its
stats in/out still pair up in finish). A finishes: its slot passes to B, and A's finish
records stats out, one request metric and one app metric.

Per request the hot path does one pass over the headers, integer bumps and one small
`_Ticket`; every constant response and the `Forward` are built once in __init__.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from dataplane.breaker import QUEUE_FULL_REASON, Breaker
from dataplane.clock import Clock
from dataplane.proxy import Forward, Outcome, RequestHead
from dataplane.proxy import LocalResponse as WireResponse
from dataplane.proxy import headers as h
from dataplane.stats import RequestStats, is_proxied

from . import probe
from .drain import Drainer
from .metrics import RequestMetrics

__all__ = [
    "ROUTE_TAG_DEFAULT",
    "ROUTE_TAG_DISABLED",
    "ROUTE_TAG_UNDEFINED",
    "QueueProxyHandler",
    "Readiness",
    "route_tag",
    "to_wire",
]

# Route-tag metric labels (reference 6; Knative >= 1.19 spelling).
ROUTE_TAG_DISABLED = "kn:disabled"
ROUTE_TAG_DEFAULT = "kn:default"
ROUTE_TAG_UNDEFINED = "kn:undefined"

# Go's http.Error shape, as the probe responses use: text, newline, nosniff.
_QUEUE_FULL = WireResponse(
    503, QUEUE_FULL_REASON.encode() + b"\n", ((b"x-content-type-options", b"nosniff"),)
)

# Header slots filled by the one pass over the request headers in begin().
_UA, _KUBELET, _NET_PROBE, _NET_HASH, _PROXY, _TAG, _DEFAULT_ROUTE, _ORIG_HOST, _STRIP = range(9)
_SLOT_OF = {
    h.USER_AGENT: _UA,
    h.K_KUBELET_PROBE: _KUBELET,
    h.K_NETWORK_PROBE: _NET_PROBE,
    h.K_NETWORK_HASH: _NET_HASH,
    h.K_PROXY_REQUEST: _PROXY,
    h.KNATIVE_SERVING_TAG: _TAG,
    h.KNATIVE_SERVING_DEFAULT_ROUTE: _DEFAULT_ROUTE,
    h.K_ORIGINAL_HOST: _ORIG_HOST,
    h.KNATIVE_SERVING_REVISION: _STRIP,
    h.KNATIVE_SERVING_NAMESPACE: _STRIP,
}
_NO_VALUES: tuple[bytes | None, ...] = (None,) * 9
_HEALTH_UA_PREFIXES = tuple(p.encode("latin-1") for p in probe.HEALTH_UA_PREFIXES)


class Readiness(Protocol):
    """What the handler needs of the readiness prober."""

    async def probe(self) -> bool: ...


def route_tag(tag: bytes | None, default_route: bytes | None) -> str:
    """The `route_tag` metric label for a request's tag headers (reference 6 table)."""
    # Go's Header.Get gives "" for absent, so an empty value reads as absent.
    if not tag:
        return ROUTE_TAG_DEFAULT if default_route else ROUTE_TAG_DISABLED
    if default_route == b"true":
        return ROUTE_TAG_UNDEFINED
    return tag.decode("latin-1")


def to_wire(response: probe.LocalResponse) -> WireResponse:
    """The engine's bytes response for one of `probe`'s str responses."""
    content_type = b"text/plain; charset=utf-8"
    headers = []
    for name, value in response.headers:
        if name.lower() == "content-type":
            content_type = value.encode("latin-1")
        else:
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return WireResponse(response.status, response.body, tuple(headers), content_type)


class _Ticket:
    """One proxied request's accounting, kept in `head.context` from begin to finish."""

    __slots__ = ("proxied", "route_tag", "holds_slot", "admitted", "waiter", "owner")

    def __init__(self, proxied: bool, tag: str) -> None:
        self.proxied = proxied
        self.route_tag = tag
        self.holds_slot = False
        self.admitted: float | None = None  # Clock seconds when it passed the breaker
        # The breaker future of a parked request (the engine waits on it), else None.
        self.waiter: asyncio.Future | None = None
        self.owner: QueueProxyHandler | None = None  # set while parked

    def on_admitted(self, waiter: asyncio.Future) -> None:
        """Done callback of the breaker future: the hand-off is where app metrics start."""
        if not waiter.cancelled():
            self.admitted = self.owner._admitted()

    def has_slot(self) -> bool:
        """Whether this request holds a breaker slot, taken at once or handed over later."""
        waiter = self.waiter
        # A hand-off may land after the engine gave up (timeout, client gone) but before
        # it cancelled the future: the slot is ours then and must go back.
        return self.holds_slot or (waiter is not None and waiter.done() and not waiter.cancelled())


class QueueProxyHandler:
    """The engine `Handler` of the queue-proxy (see the module docstring for the order)."""

    def __init__(
        self,
        *,
        upstream: tuple[str, int],
        breaker: Breaker | None,
        stats: RequestStats,
        metrics: RequestMetrics,
        drainer: Drainer,
        readiness: Readiness,
        clock: Clock,
        timeout_s: float,
        response_start_timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._breaker = breaker
        self._stats = stats
        self._metrics = metrics
        self._drainer = drainer
        self._readiness = readiness
        self._clock = clock
        self._forward = Forward(upstream, timeout_s, response_start_timeout_s, idle_timeout_s)
        self._slot_of: Callable[[bytes], int | None] = _SLOT_OF.get
        # probe.py owns the decision table; its constant answers are converted once here
        # and found again by equality, so only the per-request hash echo is built later.
        constants = [
            probe.local_response(probe.ProbeKind.HEALTH, network_probe="queue", network_hash=None,
                                 is_ready=ready, is_draining=draining)
            for ready, draining in ((True, False), (False, False), (None, True))
        ]
        constants.append(probe.local_response(probe.ProbeKind.NETWORK, network_probe="probe",
                                              network_hash=None, is_ready=None, is_draining=False))
        self._wire = {r: to_wire(r) for r in constants}
        self._ready, self._not_ready, self._shutting_down = (self._wire[r] for r in constants[:3])

    # -- begin -----------------------------------------------------------------------------
    def begin(self, head: RequestHead) -> Forward | WireResponse | Awaitable[Forward | WireResponse]:
        """Decide one request: answer a probe, refuse it, forward it, or wait for a slot."""
        values = head.pick(self._slot_of, _NO_VALUES)
        ua, kubelet, net_probe = values[_UA], values[_KUBELET], values[_NET_PROBE]
        # Most requests carry no probe header and an ordinary User-Agent: that is
        # ProbeKind.NONE by probe.py's table, decided here on bytes without decoding.
        if kubelet is not None or net_probe is not None or (
            ua is not None and ua.startswith(_HEALTH_UA_PREFIXES)
        ):
            net_probe_s = None if net_probe is None else net_probe.decode("latin-1")
            kind = probe.classify_request(
                None if ua is None else ua.decode("latin-1"),
                None if kubelet is None else kubelet.decode("latin-1"),
                net_probe_s,
            )
            if kind is not probe.ProbeKind.NONE:
                return self._answer_probe(kind, net_probe_s, values[_NET_HASH])

        self._drainer.request_seen()
        # The engine stamped `arrival` from the same clock just now: no second read.
        now = head.arrival
        proxied = values[_PROXY] is not None and is_proxied(values[_PROXY])
        self._stats.request_in(now, proxied)
        ticket = _Ticket(proxied, route_tag(values[_TAG], values[_DEFAULT_ROUTE]))
        head.context = ticket
        original_host = values[_ORIG_HOST]
        if original_host is not None or values[_STRIP] is not None:
            head.remove(h.K_ORIGINAL_HOST, h.KNATIVE_SERVING_REVISION, h.KNATIVE_SERVING_NAMESPACE)
            if original_host:  # Knative restores Host only from a non-empty value
                head.set(h.HOST, original_host)

        breaker = self._breaker
        if breaker is None:  # containerConcurrency 0: no limit, no queue
            ticket.admitted = now
            return self._forward
        if breaker.try_acquire():
            ticket.holds_slot = True
            ticket.admitted = now
            # Knative's app-metrics handler, behind the breaker, samples InFlight() as a
            # request starts there: queued + executing, this request included (7.1).
            self._metrics.set_queue_depth(breaker.in_flight)
            return self._forward
        # Park: a future the engine waits on (no task); it resolves to the Forward when a
        # release hands this request a slot. Its done callbacks run in the order added,
        # so the hand-off is stamped before the engine forwards.
        waiter = breaker.try_park(self._forward)
        if waiter is None:
            return _QUEUE_FULL  # at once: 11 x CC are already in flight
        ticket.waiter = waiter
        ticket.owner = self
        waiter.add_done_callback(ticket.on_admitted)
        # The engine runs all three revision timeouts from arrival during the wait.
        head.bound_wait_by(self._forward)
        return waiter

    def _answer_probe(
        self, kind: probe.ProbeKind, net_probe: str | None, net_hash: bytes | None
    ) -> WireResponse | Awaitable[WireResponse]:
        draining = self._drainer.is_draining
        if probe.needs_readiness(kind, net_probe, draining):
            return self._health()
        answer = probe.local_response(
            kind, network_probe=net_probe,
            network_hash=None if net_hash is None else net_hash.decode("latin-1"),
            is_ready=None, is_draining=draining,
        )
        wire = self._wire.get(answer)
        return wire if wire is not None else to_wire(answer)

    def _admitted(self) -> float:
        """A parked request got its slot: sample the queue depth as it starts; the time."""
        self._metrics.set_queue_depth(self._breaker.in_flight)
        return self._clock.now()

    async def _health(self) -> WireResponse:
        ready = await self._readiness.probe()
        if self._drainer.is_draining:  # a SIGTERM landed while we probed
            return self._shutting_down
        return self._ready if ready else self._not_ready

    # -- finish ----------------------------------------------------------------------------
    def finish(self, head: RequestHead, outcome: Outcome) -> None:
        """Account for a request once: release its slot, stats out, metrics."""
        ticket = head.context
        if not isinstance(ticket, _Ticket):
            return  # a probe: never counted
        head.context = None  # a second call would find nothing to account
        if ticket.has_slot():
            ticket.holds_slot = False
            ticket.waiter = None
            self._breaker.release()
        end = outcome.end
        self._stats.request_out(end, ticket.proxied)
        # Nothing sent (client gone, cut): Knative's proxy error handler writes a 502 to
        # the dead writer and its recorder counts that, so we count 502 as well.
        status = outcome.status or 502
        self._metrics.record_request(status, ticket.route_tag, end - head.arrival)
        if ticket.admitted is not None:
            self._metrics.record_app_request(status, end - ticket.admitted)
