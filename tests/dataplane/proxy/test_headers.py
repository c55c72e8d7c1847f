"""Pure header logic: hop-by-hop names, X-Forwarded-For, the Forwarded shim, canned bytes."""

from __future__ import annotations

import pytest

from dataplane.proxy import LocalResponse, RequestHead
from dataplane.proxy import headers as h
from dataplane.proxy.errors import ErrorKind, response_for


@pytest.mark.parametrize(
    ("xff", "xfp", "xfh", "want"),
    [
        pytest.param(b"1.2.3.4", None, None, b"for=1.2.3.4", id="for-only"),
        pytest.param(b"1.2.3.4, 5.6.7.8", b"https", b"ex.com", b"for=1.2.3.4;host=ex.com;proto=https, for=5.6.7.8",
                     id="first-node-carries-host-and-proto"),
        pytest.param(b"2001:db8::1", None, None, b'for="[2001:db8::1]"', id="ipv6-quoted-bracketed"),
        pytest.param(None, b"http", None, b"proto=http", id="proto-only"),
        pytest.param(b" 1.1.1.1 ,::1", None, None, b'for=1.1.1.1, for="[::1]"', id="whitespace-trimmed"),
    ],
)
def test_build_forwarded_matches_knative_shim(xff, xfp, xfh, want):
    assert h.build_forwarded(xff, xfp, xfh) == want


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        pytest.param([], None, id="nothing-to-shim"),
        pytest.param([(b"forwarded", b"for=x"), (b"x-forwarded-for", b"1.1.1.1")], b"for=x", id="present-kept"),
        pytest.param([(b"x-forwarded-host", b"h")], b"host=h", id="host-only"),
    ],
)
def test_add_forwarded_shim_only_when_absent(headers, want):
    h.add_forwarded_shim(headers)
    assert h.get(headers, b"forwarded") == want


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        pytest.param([], [(b"x-forwarded-for", b"9.9.9.9")], id="added"),
        pytest.param([(b"x-forwarded-for", b"1.1.1.1")], [(b"x-forwarded-for", b"1.1.1.1, 9.9.9.9")], id="appended"),
        pytest.param([(b"x-forwarded-for", b"1.1.1.1"), (b"a", b"b"), (b"x-forwarded-for", b"2.2.2.2")],
                     [(b"a", b"b"), (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 9.9.9.9")], id="lines-joined"),
    ],
)
def test_append_forwarded_for(headers, want):
    h.append_forwarded_for(headers, b"9.9.9.9")
    assert headers == want


@pytest.mark.parametrize(
    ("values", "want"),
    [
        pytest.param([b"keep-alive"], frozenset(), id="options-only"),
        pytest.param([b"Keep-Alive, X-Foo", b"x-bar ,close"], frozenset({b"x-foo", b"x-bar"}), id="names-lowered"),
        pytest.param([b"upgrade"], frozenset(), id="upgrade-is-an-option"),
    ],
)
def test_connection_named_headers(values, want):
    assert h.connection_named_headers(values) == want


def test_request_head_edits():
    head = RequestHead(b"GET", b"/", b"1.1", [(b"host", b"a"), (b"k-original-host", b"b"), (b"x", b"1")],
                       b"127.0.0.1", True, None, False, False, False, 1000.0)
    head.set(h.HOST, head.pop(h.K_ORIGINAL_HOST))
    head.remove(b"x", b"absent")
    assert head.headers == [(b"host", b"b")]
    assert head.pop(b"absent") is None and not head.has_body


@pytest.mark.parametrize(
    ("close", "head_only", "want"),
    [
        pytest.param(False, False, b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                   b"content-length: 3\r\n\r\nno\n", id="keep-alive"),
        pytest.param(True, True, b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: 3\r\nconnection: close\r\n\r\n", id="close-head"),
    ],
)
def test_local_response_bytes(close, head_only, want):
    assert LocalResponse(503, b"no\n").wire(close, head_only) == want


@pytest.mark.parametrize(
    ("kind", "started", "want_status"),
    [
        pytest.param(ErrorKind.UPSTREAM_CONNECT, False, 502, id="connect-502"),
        pytest.param(ErrorKind.UPSTREAM_RESET, False, 502, id="reset-502"),
        pytest.param(ErrorKind.TIMEOUT, False, 504, id="timeout-504"),
        pytest.param(ErrorKind.TIMEOUT, True, None, id="timeout-after-head-cuts"),
        pytest.param(ErrorKind.CLIENT_GONE, False, None, id="nobody-to-answer"),
    ],
)
def test_response_for(kind, started, want_status):
    response = response_for(kind, started)
    assert (response.status if response else None) == want_status

