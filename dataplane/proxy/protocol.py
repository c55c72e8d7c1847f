"""The client side: one asyncio Protocol per client connection, one Exchange per request.

Theory of operation. httptools parses everything a read delivers, so a pipelining client
can hand us several requests at once. Requests are answered strictly in order: the first
is the *active* exchange; later ones wait in `queue` (head parsed, a few body bytes
buffered) and the connection stops reading until the queue drains, which bounds what a
pipelining client can make us hold to one read. Reading also pauses (a bitmask of
reasons, resumed when it is 0 again) while the active request's body has nowhere to go
(admission wait, connect) and while the upstream's write buffer is over its high-water
mark; the mirror image pauses the upstream read while the client's buffer is full. So
a 200 MB body moves through in ~64 KiB steps.

Connection states: waiting for a head (header timer; 408 if a partial head stalls),
busy (the exchange's own deadlines apply), idle between requests (keep-alive timer;
closed silently), tunnelling after a 101 (raw bytes both ways, no timers).
Example: `GET /a` and `GET /b` arrive in one read: /a becomes active and is forwarded,
/b is queued and reading pauses; /a's response completes, /b starts on the next loop
turn, and with the queue empty reading resumes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from . import exchange as _exchange
from .errors import BAD_REQUEST, HEAD_TOO_LARGE, REQUEST_HEAD_TIMEOUT, BadRequest, HeadTooLarge, ProxyError
from .headers import (
    CONNECTION, CONTENT_LENGTH, EXPECT, HOP_BY_HOP, TRANSFER_ENCODING, UPGRADE,
    connection_named_headers, has_token, remove,
)
from .hooks import LocalResponse, RequestHead

if TYPE_CHECKING:
    from .server import ProxyServer

Exchange = _exchange.Exchange
logger = logging.getLogger(__name__)

# Reasons the client read is paused (bits).
PAUSE_QUEUE = 1      # pipelined requests wait behind the active one
PAUSE_WAIT = 2       # the active request's body has no upstream to go to yet
PAUSE_UPSTREAM = 4   # the upstream's write buffer is over its high-water mark
PAUSE_UPGRADE = 8    # an upgrade request waits for the upstream's 101

# What the connection timer does when its deadline passes.
_HEAD_TIMEOUT = 0       # a head is overdue: 408 if one started, then close
_KEEPALIVE_TIMEOUT = 1  # idle between requests for too long: close silently
_SLACK_S = 0.001        # uvloop's timers tick in milliseconds and may fire a hair early


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs their exchanges in order."""

    __slots__ = (
        "server", "loop", "transport", "parser", "client_ip", "active", "queue",
        "parsing", "close_after", "write_paused", "closed", "pending_error",
        "_url", "_headers", "_head_size", "_header_count", "_raw_head", "_in_head",
        "_cl", "_te", "_conn", "_upgrade", "_expect", "_read_pause", "_timer", "_dead",
        "_deadline", "_timer_at", "_on_expiry",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = b""
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.parsing: Exchange | None = None  # whose body the parser is reading
        self.close_after = False
        self.write_paused = False
        self.closed = False
        self.pending_error: LocalResponse | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._header_count = 0
        self._raw_head = 0
        self._in_head = False
        self._cl: list[bytes] | None = None
        self._te: list[bytes] | None = None
        self._conn: list[bytes] | None = None
        self._upgrade = b""
        self._expect = False
        self._read_pause = 0
        # One timer per connection whose deadline moves (see _arm): the loop timer fires
        # at `_timer_at`; `_deadline` (None = off) is what is really due, and `_on_expiry`.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._timer_at = 0.0
        self._on_expiry = _HEAD_TIMEOUT
        self._dead = False  # the parser failed or the connection upgraded: parse no more

    @property
    def is_idle(self) -> bool:
        """No request in progress: safe to close for a drain."""
        return self.active is None and not self._in_head and not self.queue

    # -- transport events ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # noqa: D102
        self.transport = transport
        transport.set_write_buffer_limits(self.server.config.write_high_water)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0].encode() if peer else b""
        self.server.connections.add(self)
        self._arm(self.server.config.header_timeout_s, _HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        active = self.active
        if active is not None and active.tunnel:
            active.tunnel_to_upstream(data)
            return
        if self._dead:
            return
        if self.active is None or self._in_head:
            self._raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0]:])
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, ProxyError) else None
            self._bad_request(HEAD_TOO_LARGE if isinstance(cause, HeadTooLarge) else BAD_REQUEST)
            return
        if self._in_head and self._raw_head > self.server.config.max_head_bytes:
            # A head that never completes grows inside the parser; cap it here.
            self._bad_request(HEAD_TOO_LARGE)

    def eof_received(self) -> bool:  # noqa: D102
        return False

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.closed = True
        self._disarm()
        if self._timer is not None:  # let the loop forget this connection now
            self._timer.cancel()
            self._timer = None
        self.server.forget(self)
        active = self.active
        if active is not None:
            active.client_lost()
        self.queue.clear()

    def pause_writing(self) -> None:  # noqa: D102
        self.write_paused = True
        if self.active is not None:
            self.active.client_write_paused(True)

    def resume_writing(self) -> None:  # noqa: D102
        self.write_paused = False
        if self.active is not None:
            self.active.client_write_paused(False)

    # -- parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:  # noqa: D102
        self._in_head = True
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._header_count = 0
        self._cl = self._te = self._conn = None
        self._upgrade = b""
        self._expect = False
        if self.active is None:
            self._arm(self.server.config.header_timeout_s, _HEAD_TIMEOUT)

    def on_url(self, url: bytes) -> None:  # noqa: D102
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.server.config.max_head_bytes:
            raise HeadTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: D102
        if not self._in_head:
            return  # a chunked body's trailer: dropped, and never into the parsed head
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        config = self.server.config
        if self._header_count > config.max_headers or self._head_size > config.max_head_bytes:
            raise HeadTooLarge()
        name = name.lower()
        if name in HOP_BY_HOP:
            # Raw lists: httptools merges or tolerates some duplicates; we judge them.
            if name == CONTENT_LENGTH:
                self._cl = [value] if self._cl is None else self._cl + [value]
            elif name == TRANSFER_ENCODING:
                self._te = [value] if self._te is None else self._te + [value]
            elif name == CONNECTION:
                self._conn = [value] if self._conn is None else self._conn + [value]
            elif name == UPGRADE:
                self._upgrade = value
            return
        if name == EXPECT and value.lower() == b"100-continue":
            self._expect = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:  # noqa: D102
        self._in_head = False
        self._raw_head = 0
        parser = self.parser
        method = parser.get_method()
        if method == b"CONNECT":
            raise BadRequest(b"CONNECT is not supported")
        content_length = None
        if self._cl is not None:
            # Request smuggling (RFC 9112 6.3): one Content-Length, digits only.
            if len(self._cl) != 1 or not self._cl[0].strip().isdigit():
                raise BadRequest(b"invalid content-length")
            content_length = int(self._cl[0])
        chunked = False
        if self._te is not None:
            if self._cl is not None or len(self._te) != 1 or self._te[0].strip().lower() != b"chunked":
                raise BadRequest(b"invalid transfer-encoding")
            chunked = True
        headers = self._headers
        upgrade = parser.should_upgrade()
        if self._conn is not None:
            named = connection_named_headers(self._conn)
            if named:
                remove(headers, named)
            upgrade = upgrade and has_token(self._conn, UPGRADE)
        head = RequestHead(
            method, self._url, parser.get_http_version().encode(), headers, self.client_ip,
            parser.should_keep_alive(), content_length, chunked, self._expect, upgrade, 0.0,
        )
        ex = Exchange(self, head, self._upgrade)
        self.parsing = ex
        if self.active is None and not self.queue:
            self._disarm()
            self.active = ex
            ex.start()
        else:
            self.queue.append(ex)
            self.pause_reading(PAUSE_QUEUE)

    def on_body(self, body: bytes) -> None:  # noqa: D102
        ex = self.parsing
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self) -> None:  # noqa: D102
        ex = self.parsing
        if ex is not None:
            self.parsing = None
            ex.request_complete()

    # -- flow control and timers ---------------------------------------------------------
    def pause_reading(self, reason: int) -> None:
        """Stop reading for `reason` (a PAUSE_* bit) until every reason is cleared."""
        if not self._read_pause and not self.closed:
            self.transport.pause_reading()
        self._read_pause |= reason

    def resume_reading(self, reason: int) -> None:
        """Clear `reason`; resume reading when no reason is left."""
        if self._read_pause & reason:
            self._read_pause &= ~reason
            if not self._read_pause and not self.closed:
                self.transport.resume_reading()

    def _arm(self, delay: float | None, expiry: int) -> None:
        # A keep-alive connection moves its deadline twice a request (head timer at the
        # request's first byte, keep-alive timer after its response). Rather than cancel
        # and create a loop timer each time, the timer stays where it is while it fires
        # no later than the new deadline; when it fires early it re-arms for the rest.
        # Example, header 10 s, keep-alive 75 s, a request every 1 ms: the loop timer is
        # set once and fires every ~10 s, instead of two timers per request.
        if delay is None:
            self._deadline = None
            return
        deadline = self.loop.time() + delay
        self._deadline = deadline
        self._on_expiry = expiry
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                return
            timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _disarm(self) -> None:
        self._deadline = None  # a pending loop timer will find nothing due

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.closed:
            return
        if self.loop.time() + _SLACK_S < deadline:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._deadline = None
        if self._on_expiry == _HEAD_TIMEOUT:
            self._on_head_timeout()
        else:
            self._on_keepalive_timeout()

    def _on_head_timeout(self) -> None:
        if self.active is None and not self.closed:
            if self._in_head:
                self.transport.write(REQUEST_HEAD_TIMEOUT.close_wire)
            self.transport.close()

    def _on_keepalive_timeout(self) -> None:
        if self.is_idle and not self.closed:
            self.transport.close()

    # -- sequencing -------------------------------------------------------------------
    def exchange_done(self, ex: Exchange, keep_alive: bool) -> None:
        """The active exchange's response has been written: close or go on."""
        self.active = None
        self.resume_reading(PAUSE_WAIT | PAUSE_UPSTREAM)
        if not keep_alive or self.close_after or self.closed:
            self.close_after = True
            if not self.closed:
                self.transport.close()
            return
        if self.queue:
            # Next turn, not now: we may be deep inside the upstream parser's callback.
            self.loop.call_soon(self._start_next)
        elif self.pending_error is not None:
            self.transport.write(self.pending_error.close_wire)
            self.transport.close()
        else:
            self._arm(
                self.server.config.header_timeout_s if self._in_head else self.server.config.keepalive_timeout_s,
                _HEAD_TIMEOUT if self._in_head else _KEEPALIVE_TIMEOUT,
            )

    def _start_next(self) -> None:
        if self.closed or self.active is not None or not self.queue:
            return
        ex = self.queue.popleft()
        if not self.queue:
            self.resume_reading(PAUSE_QUEUE)
        self.active = ex
        ex.start()

    def _bad_request(self, response: LocalResponse) -> None:
        """The parser failed: answer in order, then close; parse nothing more."""
        self._dead = True
        self.close_after = True
        self.pause_reading(PAUSE_QUEUE)
        ex = self.parsing
        if ex is not None and ex is self.active:
            ex.request_broken(response)
            return
        if ex is not None and ex in self.queue:
            self.queue.remove(ex)  # its body is broken: it gets the error, not a forward
        if self.active is None and not self.queue:
            self.transport.write(response.close_wire)
            self.transport.close()
        else:
            self.pending_error = response
            self.close_after = False  # let the queued requests run first

    def _on_upgrade(self, rest: bytes) -> None:
        """httptools stopped at an upgrade request's end: the rest is tunnel data."""
        self._dead = True
        ex = self.queue[-1] if self.queue else self.active
        if ex is None or not ex.head.upgrade:
            self._bad_request(BAD_REQUEST)
            return
        ex.tunnel_pending = rest
        self.pause_reading(PAUSE_UPGRADE)

    def shutdown(self) -> None:
        """Drain: close now if idle, else close once the current response is written."""
        self.close_after = True
        if self.is_idle and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection now (shutdown deadline passed)."""
        if self.active is not None:
            self.active.cut()
        if not self.closed:
            self.transport.abort()
