"""Message heads as bytes: request framing upstream, response re-framing for the client."""

from __future__ import annotations

import pytest

from dataplane.proxy import RequestHead
from dataplane.proxy.wire import add_forwarding_headers, request_head, response_head, upgrade_response_head

HDRS = [(b"x-a", b"1")]


def head(method=b"GET", content_length=None, chunked=False, upgrade=False, headers=None) -> RequestHead:
    """A parsed head as the client parser builds it (framing already taken out)."""
    return RequestHead(method, b"/p?q=1", b"1.1", list(headers or HDRS), b"10.0.0.9", True,
                       content_length, chunked, False, upgrade, 1_000.0)


REQUEST_CASES = [
    pytest.param(head(), b"", b"GET /p?q=1 HTTP/1.1\r\nx-a: 1\r\n\r\n", id="no-body"),
    pytest.param(head(b"POST", content_length=5), b"",
                 b"POST /p?q=1 HTTP/1.1\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n", id="content-length"),
    pytest.param(head(b"POST", content_length=0), b"",
                 b"POST /p?q=1 HTTP/1.1\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n", id="empty-body-keeps-length"),
    pytest.param(head(b"POST", chunked=True), b"",
                 b"POST /p?q=1 HTTP/1.1\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n", id="chunked"),
    pytest.param(head(upgrade=True), b"websocket",
                 b"GET /p?q=1 HTTP/1.1\r\nx-a: 1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
                 id="upgrade"),
]


@pytest.mark.parametrize(("req", "upgrade_value", "want"), REQUEST_CASES)
def test_request_head_is_framed_from_the_parsed_facts(req, upgrade_value, want):
    assert request_head(req, upgrade_value) == want


RESPONSE_CASES = [
    # (status, content_length, upstream chunked, HEAD request, client HTTP/1.1, keep) ->
    # (framing lines, keep-alive, re-chunk, close-delimited)
    pytest.param(200, 5, False, False, True, True, b"content-length: 5\r\n", True, False, False, id="length"),
    pytest.param(200, None, True, False, True, True, b"transfer-encoding: chunked\r\n", True, True, False,
                 id="chunked-stays-chunked"),
    pytest.param(200, None, False, False, True, True, b"transfer-encoding: chunked\r\n", True, True, True,
                 id="close-delimited-rechunked-for-1.1"),
    pytest.param(200, None, False, False, False, True, b"connection: close\r\n", False, False, True,
                 id="close-delimited-raw-and-close-for-1.0"),
    pytest.param(200, 5, False, False, False, True, b"content-length: 5\r\nconnection: keep-alive\r\n",
                 True, False, False, id="1.0-keep-alive-says-so"),
    pytest.param(200, 5, False, False, True, False, b"content-length: 5\r\nconnection: close\r\n",
                 False, False, False, id="closing-says-so"),
    pytest.param(200, 9, False, True, True, True, b"content-length: 9\r\n", True, False, False,
                 id="head-keeps-the-get-length-no-body"),
    pytest.param(200, None, True, True, True, True, b"", True, False, False, id="head-of-chunked-no-framing"),
    pytest.param(204, 0, False, False, True, True, b"", True, False, False, id="204-never-a-length"),
    pytest.param(304, 7, False, False, True, True, b"content-length: 7\r\n", True, False, False,
                 id="304-keeps-its-length-no-body"),
]


@pytest.mark.parametrize(
    ("status", "length", "chunked", "head_only", "http11", "keep", "framing", "want_keep", "rechunk", "close_delim"),
    RESPONSE_CASES,
)
def test_response_head_reframes_for_the_client(
    status, length, chunked, head_only, http11, keep, framing, want_keep, rechunk, close_delim
):
    wire, got_keep, got_rechunk, got_close = response_head(status, HDRS, length, chunked, head_only, http11, keep)
    start = {200: b"HTTP/1.1 200 OK\r\n", 204: b"HTTP/1.1 204 No Content\r\n",
             304: b"HTTP/1.1 304 Not Modified\r\n"}[status]
    assert wire == start + b"x-a: 1\r\n" + framing + b"\r\n"
    assert (got_keep, got_rechunk, got_close) == (want_keep, rechunk, close_delim)


def test_upgrade_response_head_readds_connection_and_upgrade():
    assert upgrade_response_head([(b"sec-websocket-accept", b"k")], b"websocket") == (
        b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: k\r\n"
        b"connection: upgrade\r\nupgrade: websocket\r\n\r\n"
    )


FORWARDING_CASES = [
    # (headers received, shim on) -> headers sent upstream
    pytest.param([(b"host", b"h")], False,
                 [(b"host", b"h"), (b"x-forwarded-for", b"10.0.0.9"), (b"x-forwarded-proto", b"http")],
                 id="client-ip-and-default-proto"),
    pytest.param([], False,
                 [(b"x-forwarded-for", b"10.0.0.9"), (b"x-forwarded-proto", b"http"), (b"host", b"127.0.0.1:8080")],
                 id="missing-host-names-the-upstream"),
    pytest.param([(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4, ::1"), (b"x-forwarded-proto", b"https")], True,
                 [(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4, ::1, 10.0.0.9"), (b"x-forwarded-proto", b"https"),
                  (b"forwarded", b'for=1.2.3.4;proto=https, for="[::1]"')],
                 id="shim-from-the-headers-as-received"),
    pytest.param([(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4")], False,
                 [(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4, 10.0.0.9"), (b"x-forwarded-proto", b"http")],
                 id="no-shim-when-off"),
]


@pytest.mark.parametrize(("received", "shim", "sent"), FORWARDING_CASES)
def test_forwarding_headers(received, shim, sent):
    headers = list(received)
    add_forwarding_headers(headers, b"10.0.0.9", ("127.0.0.1", 8080), shim)
    assert headers == sent
