"""A `Handler` that never forwards: small local endpoints served by the engine itself.

The queue-proxy's side ports (autoscaler stats, Prometheus, admin) answer a handful of
paths with tiny responses. Serving them on the engine, rather than on a web framework,
keeps the sidecar's memory to what the proxy already needs (aiohttp alone costs the
process 11-15 MB of RSS) and gives them the engine's limits, timeouts and drain.

Theory of operation: `begin` looks the request's path (the target up to `?`) up in a
table of `LocalRoute`s. A route's endpoint gets the `RequestHead` and returns a
`LocalResponse`, or an awaitable of one when it must wait (the engine then runs one
task, bounded by nothing unless the endpoint sets `head.timeout_s`, and other requests
go on meanwhile). A path not in the table gets 404, a method the route does not allow
405. The upstream pool is never used. Example: routes `{b"/metrics": LocalRoute(render,
GET_HEAD)}`; `GET /metrics?x=1` calls `render(head)`; `POST /metrics` gets 405 with
`allow: GET, HEAD`; `GET /` gets 404.

Endpoints whose answer changes per request build a `LocalResponse` each time (its
constructor is the helper: two short joins); constant answers are built once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .hooks import LocalResponse, Outcome, RequestHead

__all__ = ["GET_HEAD", "METHOD_NOT_ALLOWED", "NOT_FOUND", "LocalHandler", "LocalRoute", "path_of"]

Endpoint = Callable[[RequestHead], LocalResponse | Awaitable[LocalResponse]]

GET_HEAD = frozenset({b"GET", b"HEAD"})
NOT_FOUND = LocalResponse(404, b"404: Not Found\n")
METHOD_NOT_ALLOWED = LocalResponse(405, b"405: Method Not Allowed\n")


@dataclass(frozen=True, slots=True)
class LocalRoute:
    """One path's endpoint and the methods it accepts (None: any method)."""

    endpoint: Endpoint
    methods: frozenset[bytes] | None = None


def path_of(target: bytes) -> bytes:
    """The path of an origin-form request target: everything before `?` (and `#`)."""
    end = len(target)
    for mark in (b"?", b"#"):
        at = target.find(mark)
        if 0 <= at < end:
            end = at
    return target[:end]


class LocalHandler:
    """An engine `Handler` that answers from a table of paths and never forwards."""

    __slots__ = ("_routes", "_not_allowed")

    def __init__(self, routes: Mapping[bytes, LocalRoute]) -> None:
        self._routes = dict(routes)
        # One 405 per route, built now: `allow` names that route's methods (RFC 9110 15.5.6).
        self._not_allowed = {
            path: LocalResponse(405, METHOD_NOT_ALLOWED.body,
                                ((b"allow", b", ".join(sorted(route.methods))),))
            for path, route in self._routes.items() if route.methods is not None
        }

    def begin(self, head: RequestHead) -> LocalResponse | Awaitable[LocalResponse]:
        """The route's answer for this path and method, 404 or 405."""
        path = path_of(head.target)
        route = self._routes.get(path)
        if route is None:
            return NOT_FOUND
        if route.methods is not None and head.method not in route.methods:
            return self._not_allowed[path]
        return route.endpoint(head)

    def finish(self, head: RequestHead, outcome: Outcome) -> None:
        """Nothing to account: local endpoints keep no per-request state."""
