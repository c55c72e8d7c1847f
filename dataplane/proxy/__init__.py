"""The HTTP/1.1 reverse-proxy engine: asyncio Protocols + httptools, keep-alive pool.

The engine owns bytes and connections; its owner (queue-proxy, activator) owns policy
through a two-method `Handler`:

- `begin(head) -> LocalResponse | Forward | Awaitable[LocalResponse | Forward]`, called
  once the request head is parsed. `head` is a `RequestHead`: method, target, version,
  end-to-end `headers` (lower-case bytes names; edit them with `head.set/remove/pop`),
  client_ip, framing facts, `arrival` (Clock seconds) and a free `context` slot.
  Return a prebuilt `LocalResponse` to answer without the upstream (probes, 404, drain
  503), a `Forward` (upstream address + timeouts + optional retry hook), or an awaitable
  (an admission wait). An `asyncio.Future` (e.g. `Breaker.try_park(forward)`) is waited
  on with a done callback and no task; any other awaitable runs in exactly one task.
  Meanwhile the engine stops reading the request body and bounds the wait by the
  head's total, response-start and idle timeouts, all from arrival (set them with
  `head.bound_wait_by(forward)`); cancelling the future or task is how it gives up. An
  awaitable may raise (a future may be resolved with) a `ProxyError` subclass (e.g.
  `ServiceUnavailable(b"pending request queue full")`) to answer its status and reason.
- `finish(head, outcome)`, called exactly once for every begun request, whatever
  happened (completed, timed out, client gone, upstream reset, cancelled wait).
  `outcome` is an `Outcome`: status sent (0 if none), completed, `ErrorKind` or None,
  upstream used, response body bytes, end time.

The engine does the rest: keep-alive both sides, pipelining in order, streaming with
backpressure, hop-by-hop removal, X-Forwarded-For/-Proto (and the `Forwarded` shim when
`ProxyConfig.forwarded_shim`), 100-continue (forwarded; the upstream's 100 is relayed),
upgrades (tunnelled after 101), and the error mapping (errors.response_for: 502 before a
response byte, 504 on timeouts, 400/431/408 for bad clients; a response that breaks
after its head closes the connection).

Worked example (a queue-proxy-like handler; build every response and Forward once):

    from dataplane.proxy import Forward, LocalResponse, ProxyConfig, ProxyServer
    from dataplane.proxy import headers as h

    PROBE_OK = LocalResponse(200, b"queue")
    USER = Forward(("127.0.0.1", 8080), timeout_s=300.0)
    QUEUE_FULL = LocalResponse(503, b"pending request queue full\n")

    class QueueProxyHandler:
        def __init__(self, breaker, stats):
            self.breaker, self.stats = breaker, stats

        def begin(self, head):
            if head.get(h.K_NETWORK_PROBE) is not None:
                return PROBE_OK
            self.stats.request_in()
            host = head.pop(h.K_ORIGINAL_HOST)
            if host is not None:
                head.set(h.HOST, host)
            head.remove(h.KNATIVE_SERVING_REVISION, h.KNATIVE_SERVING_NAMESPACE)
            if self.breaker.try_acquire():
                head.context = True          # holds a slot: release in finish()
                return USER
            waiter = self.breaker.try_park(USER)   # resolves to USER on the hand-off
            if waiter is None:
                return QUEUE_FULL
            head.bound_wait_by(USER)         # the queue wait counts toward the timeouts
            head.context = waiter
            return waiter                    # no task: the engine adds a done callback

        def finish(self, head, outcome):
            slot = head.context
            if slot is True or (slot is not None and slot.done() and not slot.cancelled()):
                self.breaker.release()
            self.stats.request_out(outcome.status, outcome.end - head.arrival)

    server = ProxyServer(QueueProxyHandler(breaker, stats), ProxyConfig(forwarded_shim=True))
    await server.start("0.0.0.0", 8012)
    ...
    await server.shutdown(timeout_s=30.0)   # stop accepting, close idle, wait, cut

A server with no upstream at all (the queue-proxy's stats, metrics and admin ports) uses
`LocalHandler({b"/metrics": LocalRoute(render, GET_HEAD)})`: 404/405 for the rest.

An activator's handler returns `Forward(pod, retry=self._retry)` where `_retry(head,
error)` picks another pod (or returns None); it releases the pod in finish() using
`outcome.upstream`. Retries happen only before any response byte and while no request
body byte has been sent; `ProxyConfig.max_attempts` bounds them.
"""

from . import headers
from .errors import (
    BadRequest,
    ErrorKind,
    HeadTooLarge,
    ProxyError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
    response_for,
)
from .hooks import Decision, Forward, Handler, LocalResponse, Outcome, RequestHead
from .local import GET_HEAD, LocalHandler, LocalRoute, path_of
from .pool import PoolStats, UpstreamPool
from .server import ProxyConfig, ProxyServer, ProxyStats

__all__ = [
    "BadRequest",
    "Decision",
    "ErrorKind",
    "Forward",
    "GET_HEAD",
    "Handler",
    "HeadTooLarge",
    "LocalHandler",
    "LocalResponse",
    "LocalRoute",
    "Outcome",
    "PoolStats",
    "ProxyConfig",
    "ProxyError",
    "ProxyServer",
    "ProxyStats",
    "RequestHead",
    "ServiceUnavailable",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamTimeout",
    "headers",
    "path_of",
    "response_for",
]
