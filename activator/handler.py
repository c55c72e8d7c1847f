"""The activator's request handler: the policy the proxy engine asks about every request.

Theory of operation. Knative's activator is a chain of Go handlers (reference 5.1);
here it is flattened into the engine's two hooks, in the same order:

    begin(head):
      1. health       `User-Agent: kube-probe/...` or any `K-Kubelet-Probe` → 200, or 500
                      `shutting down` once draining. Any path; never routed or counted.
      2. probes       `K-Network-Probe: probe` → 200 echoing `K-Network-Hash` (400 without
                      one); `activator` → 200 `activator`; any other value → 400.
      3. route        Host (+ `Knative-Serving-Tag`, + a random number for the split) →
                      revision (routes.py); unknown host → 404 `unknown host: <host>`; a
                      route to a revision with no endpoints entry → 404 `unknown revision`.
      4. mode         PROXY, or SERVE with no healthy pod: the activator holds the request.
                      It counts in the concurrency reporter from now to finish (queue time
                      is load, reference 3.4; the first one for a cold revision pokes the
                      autoscaler) and carries `K-Proxy-Request: activator`, so the
                      queue-proxy counts it as proxied and the autoscaler subtracts it from
                      the pod's stats instead of counting it twice. SERVE with a healthy
                      pod: the activator is only the ingress: no report, no header (the
                      pod's own stats carry that load).
      5. throttle     a pod with room → forward now; else park in one task until a pod
                      frees up, bounded by the revision timeout from arrival → 503 with the
                      reason (queue full, timed out, revision removed).
      6. forward      to the pod's queue-proxy with the revision's timeouts; on a failure
                      before any response byte the retry hook releases the pod and picks
                      another (see below).
    finish(head, outcome): exactly once per begun request: release the pod, count out,
                      and count the request and its latency under its status for the
                      revision's metrics (plain ints, metrics.py; 502 if none was sent).

Headers. Host stays as the client sent it: Knative moves it into `K-Original-Host`
because it rewrites Host to reach the pod through a Kubernetes Service; we connect to
the pod's queue-proxy directly, and the queue-proxy routes nothing by Host. A client's own
`K-Proxy-Request` and `K-Original-Host` are dropped (internal headers from outside are not
trusted: the first would skew the autoscaler, the second would rewrite Host at the
queue-proxy). `Knative-Serving-Revision`/`-Namespace` are not added: the revision is known
here and the queue-proxy strips them anyway. A `Knative-Serving-Tag` naming a tag the
host's route does not have is dropped, since the queue-proxy labels metrics with it.

Retries (Knative's activator makes one attempt; we add this, bounded by the engine's
`max_attempts`): a connect failure (refused, unreachable) is retried on another pod and
sends the failed pod back to the prober, so it takes no traffic until it answers again;
a connection closed before any response byte is retried only for idempotent methods
(RFC 9110 9.2.2), since the pod may have acted on the request.

Worked example, CC 1, one pod busy, a second request arrives in PROXY mode: it counts in
(concurrency 2 in the next report), gets `K-Proxy-Request`, parks; the first finishes,
its release hands the pod to the second, which is forwarded; 1 s later the reporter
sends the time-weighted average of both.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from dataplane import ACTIVATOR_NAME, Mode, PodAddress, RevisionEndpoints, RevisionKey
from dataplane.proxy import ErrorKind, Forward, LocalResponse, Outcome, RequestHead
from dataplane.proxy import ServiceUnavailable
from dataplane.proxy import headers as h

from .metrics import RevisionRequests
from .reporter import ConcurrencyReporter
from .routes import RouteTable
from .throttler import CapacityError, PodTracker, Throttler

__all__ = ["ActivatorHandler", "RevisionState"]

_HEALTHY = LocalResponse(200)
_DRAINING = LocalResponse(500, b"shutting down\n")
_ACTIVATOR_PROBE = LocalResponse(200, ACTIVATOR_NAME.encode())
_NO_HASH = LocalResponse(400, b"no K-Network-Hash header\n")
_PROXY_VALUE = ACTIVATOR_NAME.encode()
_KUBE_PROBE_UA = b"kube-probe/"
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# Header slots filled by the one pass over the request headers in begin().
_UA, _KUBELET, _NET_PROBE, _NET_HASH, _HOST, _TAG, _STRIP = range(7)
_SLOT_OF = {
    h.USER_AGENT: _UA,
    h.K_KUBELET_PROBE: _KUBELET,
    h.K_NETWORK_PROBE: _NET_PROBE,
    h.K_NETWORK_HASH: _NET_HASH,
    h.HOST: _HOST,
    h.KNATIVE_SERVING_TAG: _TAG,
    h.K_PROXY_REQUEST: _STRIP,
    h.K_ORIGINAL_HOST: _STRIP,
}
_NO_VALUES: tuple[bytes | None, ...] = (None,) * 7


class RevisionState:
    """One revision as the handler sees it: endpoints, throttler, Forwards per pod, counts."""

    __slots__ = ("key", "endpoints", "throttler", "requests", "_forwards", "_retry")

    def __init__(self, endpoints: RevisionEndpoints, throttler: Throttler, retry: Callable) -> None:
        self.key = endpoints.key
        self.endpoints = endpoints
        self.throttler = throttler
        self.requests = RevisionRequests()  # finished requests, for the metrics collector
        self._retry = retry
        self._forwards: dict[PodAddress, Forward] = {}

    def set_endpoints(self, endpoints: RevisionEndpoints) -> None:
        """New endpoints: timeouts may have changed, so Forwards are rebuilt on demand."""
        if (endpoints.timeout_s, endpoints.response_start_timeout_s, endpoints.idle_timeout_s) != (
            self.endpoints.timeout_s, self.endpoints.response_start_timeout_s,
            self.endpoints.idle_timeout_s,
        ):
            self._forwards = {}
        self.endpoints = endpoints

    def forward_for(self, pod: PodAddress) -> Forward:
        """The Forward to `pod` with this revision's timeouts (built once per pod)."""
        forward = self._forwards.get(pod)
        if forward is None:
            ep = self.endpoints
            forward = self._forwards[pod] = Forward(
                (pod.host, pod.port), ep.timeout_s, ep.response_start_timeout_s,
                ep.idle_timeout_s, retry=self._retry,
            )
        return forward


class _Ticket:
    """One routed request's state, kept in `head.context` from begin to finish."""

    __slots__ = ("state", "proxied", "tracker", "finished")

    def __init__(self, state: RevisionState, proxied: bool) -> None:
        self.state = state
        self.proxied = proxied
        self.tracker: PodTracker | None = None
        self.finished = False


class ActivatorHandler:
    """The engine `Handler` of the activator (see the module docstring for the order)."""

    def __init__(
        self,
        reporter: ConcurrencyReporter,
        *,
        on_connect_error: Callable[[RevisionKey, PodAddress], None],
        rng: random.Random | None = None,
    ) -> None:
        self.routes = RouteTable()  # replaced whole by the Activator
        self.revisions: dict[RevisionKey, RevisionState] = {}
        self.draining = False
        self._reporter = reporter
        self._on_connect_error = on_connect_error
        self._random = (rng or random.Random()).random
        self._slot_of = _SLOT_OF.get
        self.retry = self._retry  # bound once: every Forward shares it

    # -- begin ---------------------------------------------------------------------------
    def begin(self, head: RequestHead) -> Forward | LocalResponse | Awaitable[Forward]:
        """Decide one request: answer it here, forward it now, or park it for a pod."""
        values = head.pick(self._slot_of, _NO_VALUES)
        ua = values[_UA]
        if values[_KUBELET] or (ua is not None and ua.startswith(_KUBE_PROBE_UA)):
            return _DRAINING if self.draining else _HEALTHY
        if values[_NET_PROBE] is not None:
            return self._answer_probe(values[_NET_PROBE], values[_NET_HASH])

        host = values[_HOST] or b""
        key = self.routes.lookup(host, values[_TAG], self._random())
        if key is None:
            return LocalResponse(404, b"unknown host: " + (host or b"(none)") + b"\n")
        state = self.revisions.get(key)
        if state is None:
            return LocalResponse(404, b"unknown revision: " + str(key).encode() + b"\n")
        if values[_STRIP] is not None:
            head.remove(h.K_PROXY_REQUEST, h.K_ORIGINAL_HOST)
        tag = values[_TAG]
        if tag is not None and not self.routes.has_tag(host, tag):
            # The queue-proxy turns this header into a metric label: a value no route
            # knows would let clients mint label values without bound.
            head.remove(h.KNATIVE_SERVING_TAG)

        throttler = state.throttler
        proxied = throttler.mode is Mode.PROXY or not throttler.has_pods
        ticket = _Ticket(state, proxied)
        head.context = ticket
        if proxied:
            # The engine stamped `arrival` from the same clock: no second read.
            self._reporter.request_in(key, head.arrival)
            head.headers.append((h.K_PROXY_REQUEST, _PROXY_VALUE))
        tracker = throttler.try_reserve()
        if tracker is not None:
            ticket.tracker = tracker
            return state.forward_for(tracker.pod)
        return self._wait(head, ticket)

    def _answer_probe(self, probe: bytes, hash_value: bytes | None) -> LocalResponse:
        if probe == b"probe":
            if not hash_value:
                return _NO_HASH
            return LocalResponse(200, headers=((h.K_NETWORK_HASH, hash_value),))
        if probe == _PROXY_VALUE:
            return _ACTIVATOR_PROBE
        return LocalResponse(400, b'unexpected probe header value: "' + probe + b'"\n')

    async def _wait(self, head: RequestHead, ticket: _Ticket) -> Forward:
        state = ticket.state
        deadline = head.arrival + state.endpoints.timeout_s
        try:
            tracker = await state.throttler.wait_reserve(deadline)
        except CapacityError as exc:
            raise ServiceUnavailable(f"{exc.reason} for revision {exc.key}".encode()) from None
        if ticket.finished:  # the engine gave up on us while the pod was being handed over
            state.throttler.release(tracker)
            raise ServiceUnavailable(b"request finished while waiting")
        ticket.tracker = tracker
        return state.forward_for(tracker.pod)

    # -- retry -------------------------------------------------------------------------
    def _retry(self, head: RequestHead, error: object) -> Forward | Awaitable[Forward] | None:
        ticket = head.context
        if not isinstance(ticket, _Ticket) or ticket.tracker is None:
            return None
        if error is ErrorKind.UPSTREAM_CONNECT:
            pass  # nothing reached the pod: always safe to try another
        elif error is not ErrorKind.UPSTREAM_RESET or head.method not in _IDEMPOTENT:
            return None
        state = ticket.state
        failed, ticket.tracker = ticket.tracker, None
        state.throttler.release(failed)
        if error is ErrorKind.UPSTREAM_CONNECT and failed.active:
            self._on_connect_error(state.key, failed.pod)
        tracker = state.throttler.try_reserve()
        if tracker is not None:
            ticket.tracker = tracker
            return state.forward_for(tracker.pod)
        return self._wait(head, ticket)

    # -- finish ------------------------------------------------------------------------
    def finish(self, head: RequestHead, outcome: Outcome) -> None:
        """Release the pod, count the request out and into the metrics, exactly once."""
        ticket = head.context
        if not isinstance(ticket, _Ticket):
            return  # answered locally before routing
        ticket.finished = True
        state = ticket.state
        if ticket.tracker is not None:
            state.throttler.release(ticket.tracker)
            ticket.tracker = None
        end = outcome.end
        if ticket.proxied:
            self._reporter.request_out(state.key, end)
        # Nothing sent (client gone, connection cut): counted as 502, as the queue-proxy
        # does, so every routed request shows up under some status.
        state.requests.record(outcome.status or 502, end - head.arrival)
