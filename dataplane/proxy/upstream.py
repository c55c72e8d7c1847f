"""One keep-alive connection to an upstream: an asyncio Protocol + httptools response parser.

The connection parses responses and hands each event to the exchange attached to it
(`protocol.Exchange`); between requests it sits idle in the pool with no exchange.
Response framing is noted here (Content-Length, chunked, keep-alive) and the exchange
re-frames the body for the client.

Two httptools quirks shape this code: it cannot be told "this response has no body"
(a response to HEAD carries the GET's Content-Length), so after a HEAD response the parser
is replaced; and it never completes a body delimited by connection close, so the end of
such a response is the connection's end (`connection_lost`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from .headers import (
    CONNECTION, CONTENT_LENGTH, HOP_BY_HOP, TRANSFER_ENCODING, UPGRADE,
    connection_named_headers, has_token, remove,
)

if TYPE_CHECKING:
    from .pool import UpstreamPool
    from .protocol import Exchange


class UpstreamConnection(asyncio.Protocol):
    """A connection to one upstream address, reused across requests via the pool."""

    __slots__ = (
        "pool", "key", "transport", "parser", "exchange", "closed", "idle_since", "reused",
        "status", "headers", "content_length", "chunked", "keep_alive", "upgrade_value",
        "_in_head", "_skip", "_reading_paused", "_connection",
    )

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = False
        self.upgrade_value = b""
        self._in_head = False
        self._skip = False
        self._reading_paused = False
        self._connection: list[bytes] = []

    # -- transport events ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # noqa: D102
        self.transport = transport
        transport.set_write_buffer_limits(self.pool.write_high_water)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        exchange = self.exchange
        if exchange is None:
            # Bytes from an idle upstream are a protocol error; never reuse it.
            self.close()
            return
        if exchange.tunnel:
            exchange.tunnel_to_client(data)
            return
        exchange.hold()  # one client write for whatever this read completes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.exchange is exchange:
                exchange.upstream_upgraded(self, data[exc.args[0]:])
        except httptools.HttpParserError:
            self.keep_alive = False
            if self.exchange is exchange:
                exchange.upstream_bad_response(self)
            self.close()
        finally:
            exchange.flush()
        if self._skip:
            # A HEAD response ended at its head; start the next response on a clean parser.
            self._skip = False
            self.parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool:  # noqa: D102
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.closed = True
        self.pool.discard(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.upstream_lost(self)

    def pause_writing(self) -> None:  # noqa: D102
        if self.exchange is not None:
            self.exchange.upstream_write_paused(True)

    def resume_writing(self) -> None:  # noqa: D102
        if self.exchange is not None:
            self.exchange.upstream_write_paused(False)

    # -- parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:  # noqa: D102
        if self.exchange is None and not self._skip:
            self.close()  # a response nobody asked for: this connection is out of step
        self._in_head = True
        self.headers = []
        self.content_length = None
        self.chunked = False
        self.upgrade_value = b""
        self._connection = []

    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: D102
        if not self._in_head:
            return  # a trailer: dropped (the engine re-frames and does not forward them)
        name = name.lower()
        if name in HOP_BY_HOP:
            if name == CONTENT_LENGTH:
                self.content_length = int(value)
            elif name == TRANSFER_ENCODING:
                self.chunked = has_token([value], b"chunked")
            elif name == UPGRADE:
                self.upgrade_value = value
            elif name == CONNECTION:
                self._connection.append(value)
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:  # noqa: D102
        self._in_head = False
        if self._skip or self.exchange is None:
            return
        if self._connection:
            named = connection_named_headers(self._connection)
            if named:
                remove(self.headers, named)
        self.status = self.parser.get_status_code()
        # Asked now: after the message completes the parser has reset its flags.
        self.keep_alive = self.parser.should_keep_alive()
        if self.status < 200:
            if self.status != 101:
                self.exchange.upstream_interim(self.status)
            return
        exchange = self.exchange
        exchange.upstream_head(self)
        if exchange.is_head_request and self.exchange is exchange:
            self._skip = True
            exchange.upstream_complete(self)

    def on_body(self, body: bytes) -> None:  # noqa: D102
        if self._skip or self.exchange is None:
            self.close()  # body bytes after a HEAD response or for nobody: out of step
            return
        self.exchange.upstream_body(body)

    def on_message_complete(self) -> None:  # noqa: D102
        if self._skip or self.status < 200 or self.exchange is None:
            return
        self.exchange.upstream_complete(self)

    # -- used by the exchange and the pool --------------------------------------------
    def set_reading(self, on: bool) -> None:
        """Pause or resume reading (response backpressure), idempotently."""
        if on == (not self._reading_paused) or self.closed:
            return
        self._reading_paused = not on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def close(self) -> None:
        """Close the connection (it will not be reused)."""
        self.keep_alive = False
        if not self.closed and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding buffered writes."""
        self.keep_alive = False
        if not self.closed and self.transport is not None:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"UpstreamConnection({self.key[0]}:{self.key[1]}, closed={self.closed})"
