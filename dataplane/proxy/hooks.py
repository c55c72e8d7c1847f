"""The hook interface between the engine and its owner (queue-proxy, activator).

Per request the engine calls `Handler.begin(head)` once the head is parsed; it returns a
`LocalResponse`, a `Forward`, or an awaitable resolving to one of those (or raising a
`ProxyError`). Once per begun request, whatever happened, it calls
`Handler.finish(head, outcome)`. See the package docstring for a worked example.
"""

from __future__ import annotations

import http
from collections.abc import Awaitable, Callable
from typing import Protocol

from .headers import get as _get_header
from .headers import remove as _remove_headers


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1"))


# Precomputed so no response formats its status line per request (STYLE 8).
STATUS_LINES: dict[int, bytes] = {int(s): _status_line(int(s)) for s in http.HTTPStatus}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <phrase>\\r\\n`, from the table when the status is a known one."""
    line = STATUS_LINES.get(status)
    return line if line is not None else _status_line(status)


class RequestHead:
    """A parsed request head, shared by begin() and finish(); the handler may edit it.

    `headers` holds end-to-end headers only (hop-by-hop ones and the framing are taken
    out by the engine), names lower-case bytes. Edits made in begin() (or before an
    awaitable resolves) are what the upstream receives. `context` is the handler's own
    slot, e.g. for a breaker ticket or a picked pod to release in finish().
    """

    __slots__ = (
        "method", "target", "version", "headers", "client_ip", "keep_alive",
        "content_length", "chunked", "expect_continue", "upgrade", "arrival",
        "timeout_s", "response_start_timeout_s", "idle_timeout_s", "attempts", "context",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        client_ip: bytes,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
        upgrade: bool,
        arrival: float,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.client_ip = client_ip
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        # Clock seconds when the head was complete; timeouts and latency count from here.
        self.arrival = arrival
        # Deadlines of an admission wait, set in begin() before returning an awaitable
        # (`bound_wait_by`): all three count from arrival and run during the wait, as
        # Knative's timeout handler wraps its breaker (reference 4.5). A Forward's unset
        # timeouts fall back to them.
        self.timeout_s: float | None = None
        self.response_start_timeout_s: float | None = None
        self.idle_timeout_s: float | None = None
        self.attempts = 0
        self.context: object = None

    def bound_wait_by(self, forward: Forward) -> None:
        """Let `forward`'s total, response-start and idle timeouts bound the admission wait."""
        self.timeout_s = forward.timeout_s
        self.response_start_timeout_s = forward.response_start_timeout_s
        self.idle_timeout_s = forward.idle_timeout_s

    @property
    def has_body(self) -> bool:
        """Whether a request body follows the head."""
        return self.chunked or bool(self.content_length)

    def get(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case bytes), or None."""
        return _get_header(self.headers, name)

    def pick(self, slot_of: Callable[[bytes], int | None], empty: tuple[None, ...]) -> list:
        """The first value of each wanted header in one pass over the head.

        `slot_of` maps a lower-case header name to its index in the result (a dict's
        `get`, bound once by the caller); `empty` is a tuple of None of the result's
        length. A handler reads all the headers it decides on this way instead of one
        scan per `get`.
        """
        values = list(empty)
        for name, value in self.headers:
            slot = slot_of(name)
            if slot is not None and values[slot] is None:
                values[slot] = value
        return values

    def set(self, name: bytes, value: bytes) -> None:
        """Replace every `name` header with one `name: value`."""
        self.remove(name)
        self.headers.append((name, value))

    def remove(self, *names: bytes) -> None:
        """Delete every header with one of these (lower-case) names."""
        for key, _ in self.headers:
            if key in names:
                _remove_headers(self.headers, frozenset(names))
                return

    def pop(self, name: bytes) -> bytes | None:
        """Remove header `name` and return its first value (None if absent)."""
        value = self.get(name)
        if value is not None:
            self.remove(name)
        return value


class LocalResponse:
    """A response the engine writes itself; build it once and return the same object."""

    __slots__ = ("status", "body", "keep_alive_wire", "close_wire")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        content_type: bytes = b"text/plain; charset=utf-8",
    ) -> None:
        self.status = status
        self.body = body
        parts = [status_line(status)]
        for key, value in headers:
            parts += [key, b": ", value, b"\r\n"]
        if body:
            parts += [b"content-type: ", content_type, b"\r\n"]
        parts.append(b"content-length: %d\r\n" % len(body))
        head = b"".join(parts)
        self.keep_alive_wire = head + b"\r\n" + body
        self.close_wire = head + b"connection: close\r\n\r\n" + body

    def wire(self, close: bool, head_only: bool) -> bytes:
        """The bytes to send: with `connection: close` if closing, without body for HEAD."""
        data = self.close_wire if close else self.keep_alive_wire
        return data[: len(data) - len(self.body)] if head_only and self.body else data

    def __repr__(self) -> str:
        return f"LocalResponse({self.status}, {self.body!r})"


class Forward:
    """Send the request to `upstream`; build it once per upstream and reuse it.

    Timeouts (seconds, None = off) count from the request's arrival, so time spent in
    an admission wait counts (reference 4.5): `timeout_s` gives 504 `request timeout`
    before any response byte and cuts the connection after; `response_start_timeout_s`
    gives 504 if no response head has been sent; `idle_timeout_s` gives 504 (or cuts) when
    nothing was written to the client for that long. Each one left None falls back to the
    head's (`head.timeout_s` and friends, see `RequestHead.bound_wait_by`).
    `retry(head, error)`, when set, is asked for another decision after a failure before
    any response byte while the request body is still replayable; it returns a Forward,
    an awaitable of one, or None to answer the error (bounded by the handler, and by the
    engine's `max_attempts`).
    """

    __slots__ = ("upstream", "timeout_s", "response_start_timeout_s", "idle_timeout_s", "retry")

    def __init__(
        self,
        upstream: tuple[str, int],
        timeout_s: float | None = None,
        response_start_timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
        retry: Callable[[RequestHead, object], Forward | Awaitable[Forward] | None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.timeout_s = timeout_s
        self.response_start_timeout_s = response_start_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.retry = retry

    def __repr__(self) -> str:
        return f"Forward({self.upstream[0]}:{self.upstream[1]})"


class Outcome:
    """What happened to a begun request, given to finish() exactly once."""

    __slots__ = ("status", "completed", "error", "upstream", "local", "response_bytes", "end")

    def __init__(self, status, completed, error, upstream, local, response_bytes, end) -> None:
        # Status sent to the client, 0 if none was (client gone, connection cut early).
        self.status: int = status
        # The whole response reached the client's transport.
        self.completed: bool = completed
        # An ErrorKind, or None.
        self.error = error
        # The last upstream tried, or None for a local response.
        self.upstream: tuple[str, int] | None = upstream
        self.local: bool = local
        # Response body bytes relayed to the client.
        self.response_bytes: int = response_bytes
        # Clock seconds at the end; latency is `end - head.arrival`.
        self.end: float = end

    def __repr__(self) -> str:
        return f"Outcome(status={self.status}, completed={self.completed}, error={self.error})"


Decision = LocalResponse | Forward


class Handler(Protocol):
    """What the engine's owner implements: decide per request, account at the end."""

    def begin(self, head: RequestHead) -> Decision | Awaitable[Decision]: ...

    def finish(self, head: RequestHead, outcome: Outcome) -> None: ...
