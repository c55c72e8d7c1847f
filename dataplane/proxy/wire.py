"""The bytes of message heads: what goes upstream, what goes back to the client.

The exchange (exchange.py) decides when to send; this module decides what. The engine
re-frames every message itself: the parsers took out the hop-by-hop headers and the
sender's framing (Content-Length, Transfer-Encoding, Connection), so the framing written
here is the only framing on the wire and a smuggled or stale one cannot slip through.

Response framing, by what the upstream's head said:

    upstream says                     client is HTTP/1.1             client is HTTP/1.0
    HEAD request, 204, 304            no body: Content-Length passed on (except 204)
    Content-Length: n                 content-length: n              content-length: n
    chunked, or delimited by close    transfer-encoding: chunked     raw bytes, then close

Example: a close-delimited 200 for an HTTP/1.1 keep-alive client becomes
`HTTP/1.1 200 OK` + `transfer-encoding: chunked`, keeps the connection, and the exchange
re-chunks the body and writes `0\\r\\n\\r\\n` when the upstream closes (as Go's server does
for a body of unknown length); for HTTP/1.0 the bytes are relayed raw with
`connection: close`.
"""

from __future__ import annotations

from .headers import HOST, X_FORWARDED_PROTO, add_forwarded_shim, append_forwarded_for, serialize_headers
from .hooks import RequestHead, status_line

__all__ = [
    "CONTINUE",
    "CRLF",
    "HTTP11",
    "LAST_CHUNK",
    "add_forwarding_headers",
    "request_head",
    "response_head",
    "upgrade_response_head",
]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"
HTTP11 = b"1.1"


def add_forwarding_headers(
    headers: list[tuple[bytes, bytes]], client_ip: bytes, upstream: tuple[str, int], forwarded_shim: bool
) -> None:
    """The headers a proxy hop adds (reference 4.8); call once per request, not per attempt.

    `Forwarded` is built from the X-Forwarded-* headers as received (before this hop's
    own X-Forwarded-For entry), the client IP is appended to X-Forwarded-For, and
    X-Forwarded-Proto (`http`) and Host (the upstream) are added when absent.
    """
    if forwarded_shim:
        add_forwarded_shim(headers)
    append_forwarded_for(headers, client_ip)
    has_proto = has_host = False
    for key, _ in headers:
        if key == X_FORWARDED_PROTO:
            has_proto = True
        elif key == HOST:
            has_host = True
    if not has_proto:
        headers.append((X_FORWARDED_PROTO, b"http"))
    if not has_host:  # an HTTP/1.0 client may omit it; HTTP/1.1 upstreams require it
        host, port = upstream
        headers.append((HOST, b"%s:%d" % (host.encode(), port)))


def request_head(head: RequestHead, upgrade_value: bytes) -> bytes:
    """The request head sent upstream: always HTTP/1.1, framed from the parsed facts."""
    parts = [head.method, b" ", head.target, b" HTTP/1.1\r\n"]
    serialize_headers(parts, head.headers)
    if head.chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif head.content_length is not None:
        parts.append(b"content-length: %d\r\n" % head.content_length)
    if head.upgrade:
        parts += (b"connection: upgrade\r\nupgrade: ", upgrade_value, CRLF)
    parts.append(CRLF)
    return b"".join(parts)


def response_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    content_length: int | None,
    chunked: bool,
    head_only: bool,
    http11: bool,
    keep: bool,
) -> tuple[bytes, bool, bool, bool]:
    """The client's response head per the table above.

    `chunked`/`content_length` are the upstream's framing, `head_only` is a HEAD request,
    `keep` whether the client connection may stay open as far as the request goes.
    Returns (bytes, keep-alive, re-chunk the body, the body ends when the upstream closes).
    """
    parts = [status_line(status)]
    serialize_headers(parts, headers)
    rechunk = close_delimited = False
    if head_only or status == 204 or status == 304:
        if content_length is not None and status != 204:
            parts.append(b"content-length: %d\r\n" % content_length)
    elif content_length is not None:
        parts.append(b"content-length: %d\r\n" % content_length)
    else:
        close_delimited = not chunked
        if http11:
            parts.append(b"transfer-encoding: chunked\r\n")
            rechunk = True
        else:
            keep = False
    if not keep:
        parts.append(b"connection: close\r\n")
    elif not http11:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(CRLF)
    return b"".join(parts), keep, rechunk, close_delimited


def upgrade_response_head(headers: list[tuple[bytes, bytes]], upgrade_value: bytes) -> bytes:
    """The 101 relayed to the client before tunnelling (Connection/Upgrade re-added)."""
    parts = [status_line(101)]
    serialize_headers(parts, headers)
    parts += (b"connection: upgrade\r\nupgrade: ", upgrade_value, b"\r\n\r\n")
    return b"".join(parts)
