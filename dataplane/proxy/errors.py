"""Error kinds on the request path, the exceptions that carry a status, and the one map
from an outcome to the response the client sees.

The rule (STYLE 7, Knative's pkg/queue/handler.go): before any response byte went to
the client an error becomes a canned response with the reason in the body; after the
response head went out, the only honest signal left is closing the connection, never a
second status line.
"""

from __future__ import annotations

import enum

from .hooks import LocalResponse


class ErrorKind(enum.Enum):
    """Why a request did not end with a complete upstream response."""

    UPSTREAM_CONNECT = "upstream-connect"        # refused, unreachable, connect timed out
    UPSTREAM_RESET = "upstream-reset"            # closed/reset before any response byte
    UPSTREAM_BAD_RESPONSE = "upstream-bad-response"  # unparsable response head
    UPSTREAM_BROKEN = "upstream-broken"          # failed after the response head was sent
    TIMEOUT = "timeout"                          # total request timeout
    RESPONSE_START_TIMEOUT = "response-start-timeout"
    IDLE_TIMEOUT = "idle-timeout"
    CLIENT_GONE = "client-gone"                  # client closed before the response ended
    HANDLER = "handler"                          # begin()/its awaitable raised
    REJECTED = "rejected"                        # a ProxyError raised by the handler
    SHUTDOWN = "shutdown"                        # cut by a shutdown past its deadline


class ProxyError(Exception):
    """An error that carries the response to send; handlers may raise its subclasses."""

    status = 500
    reason = b"internal error"

    def __init__(self, reason: bytes | None = None) -> None:
        super().__init__((reason or self.reason).decode("latin-1"))
        if reason is not None:
            self.reason = reason

    def response(self) -> LocalResponse:
        """The canned response for this error."""
        return LocalResponse(self.status, self.reason + b"\n")


class BadRequest(ProxyError):
    """Malformed or ambiguous request (including smuggling attempts): 400 and close."""

    status = 400
    reason = b"bad request"


class HeadTooLarge(ProxyError):
    """Request head over the byte or header-count limit: 431 and close."""

    status = 431
    reason = b"request header fields too large"


class ServiceUnavailable(ProxyError):
    """503, e.g. the breaker's `pending request queue full` or a drain."""

    status = 503
    reason = b"service unavailable"


class UpstreamError(ProxyError, ConnectionError):
    """The upstream failed before answering: 502."""

    status = 502
    reason = b"bad gateway"


class UpstreamTimeout(ProxyError, TimeoutError):
    """The upstream did not answer in time: 504."""

    status = 504
    reason = b"request timeout"


# Canned responses, built once. Bodies end in a newline like Go's http.Error.
BAD_REQUEST = LocalResponse(400, b"bad request\n")
HEAD_TOO_LARGE = LocalResponse(431, b"request header fields too large\n")
REQUEST_HEAD_TIMEOUT = LocalResponse(408, b"request timeout\n")
INTERNAL_ERROR = LocalResponse(500, b"internal error\n")
GATEWAY_TIMEOUT = LocalResponse(504, b"request timeout")
_BY_KIND = {
    ErrorKind.UPSTREAM_CONNECT: LocalResponse(502, b"upstream connect error\n"),
    ErrorKind.UPSTREAM_RESET: LocalResponse(502, b"upstream closed before responding\n"),
    ErrorKind.UPSTREAM_BAD_RESPONSE: LocalResponse(502, b"upstream sent a malformed response\n"),
    # Knative's timeout handler answers all three timeouts with the same body, written
    # as is (no http.Error newline): clients and tests compare it byte for byte. The
    # ErrorKind in the Outcome still says which one fired.
    ErrorKind.TIMEOUT: GATEWAY_TIMEOUT,
    ErrorKind.RESPONSE_START_TIMEOUT: GATEWAY_TIMEOUT,
    ErrorKind.IDLE_TIMEOUT: GATEWAY_TIMEOUT,
    ErrorKind.HANDLER: INTERNAL_ERROR,
    ErrorKind.SHUTDOWN: LocalResponse(503, b"shutting down\n"),
}


def response_for(kind: ErrorKind, response_started: bool) -> LocalResponse | None:
    """The response for an error, or None when the connection must be cut instead.

    None also for kinds that have nobody to answer (the client is gone) or that only
    happen after the head was sent.
    """
    if response_started:
        return None
    return _BY_KIND.get(kind)
