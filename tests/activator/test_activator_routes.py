"""Route table: host normalisation, tag header routing, percent splits."""

from __future__ import annotations

import random

import pytest

from activator.routes import HostRoute, RouteTable, normalize_host
from dataplane import RevisionKey

A = RevisionKey("default", "hello-00001")
B = RevisionKey("default", "hello-00002")
C = RevisionKey("default", "hello-00003")

TABLE = RouteTable([
    HostRoute("hello.default.example.com", ((A, 80), (B, 20)), {"canary": B, "old": C}),
    HostRoute("canary-hello.default.example.com", ((B, 100),)),
    HostRoute("zero.default.example.com", ((A, 0), (C, 100))),
])


@pytest.mark.parametrize("raw, want", [
    pytest.param(b"hello.default.example.com", b"hello.default.example.com", id="plain"),
    pytest.param(b"Hello.Default.Example.COM", b"hello.default.example.com", id="case"),
    pytest.param(b"hello.default.example.com:8080", b"hello.default.example.com", id="port"),
    pytest.param(b"hello.default.example.com.", b"hello.default.example.com", id="trailing-dot"),
    pytest.param(b"hello.default.example.com.:80", b"hello.default.example.com", id="dot-and-port"),
    pytest.param(b"[::1]:8080", b"[::1]", id="ipv6-port"),
    pytest.param(b"[::1]", b"[::1]", id="ipv6"),
    pytest.param(b" hello.default.example.com ", b"hello.default.example.com", id="spaces"),
])
def test_normalize_host(raw, want):
    assert normalize_host(raw) == want


@pytest.mark.parametrize("host, tag, r, want", [
    pytest.param(b"hello.default.example.com", None, 0.0, A, id="split-low-band"),
    pytest.param(b"hello.default.example.com", None, 0.7999, A, id="split-below-edge"),
    pytest.param(b"hello.default.example.com", None, 0.80, B, id="split-at-edge-is-next-band"),
    pytest.param(b"hello.default.example.com", None, 0.9999, B, id="split-top"),
    pytest.param(b"HELLO.default.example.com:8080", None, 0.1, A, id="normalised-host"),
    pytest.param(b"hello.default.example.com", b"canary", 0.1, B, id="tag-header-wins"),
    pytest.param(b"hello.default.example.com", b"Canary", 0.1, B, id="tag-header-case"),
    pytest.param(b"hello.default.example.com", b"old", 0.9, C, id="tag-header-other"),
    pytest.param(b"hello.default.example.com", b"nope", 0.1, A, id="unknown-tag-falls-back"),
    pytest.param(b"hello.default.example.com", b"nope", 0.9, B, id="unknown-tag-splits"),
    pytest.param(b"canary-hello.default.example.com", None, 0.1, B, id="tag-host"),
    pytest.param(b"canary-hello.default.example.com", b"old", 0.1, B, id="tag-host-ignores-header"),
    pytest.param(b"zero.default.example.com", None, 0.0, C, id="zero-percent-dropped"),
    pytest.param(b"nowhere.example.com", None, 0.1, None, id="unknown-host"),
    pytest.param(b"", None, 0.1, None, id="empty-host"),
])
def test_lookup(host, tag, r, want):
    assert TABLE.lookup(host, tag, r) == want


def test_split_frequencies_follow_percents():
    rng = random.Random(7)
    counts = {A: 0, B: 0}
    for _ in range(10_000):
        counts[TABLE.lookup(b"hello.default.example.com", None, rng.random())] += 1
    assert 7_800 <= counts[A] <= 8_200


@pytest.mark.parametrize("kwargs, message", [
    pytest.param(dict(host="h", splits=((A, 50), (B, 40))), "sum to 90", id="sum-not-100"),
    pytest.param(dict(host="h", splits=((A, 101), (B, -1))), "must be an integer", id="range"),
    pytest.param(dict(host="h", splits=((A, 50.0), (B, 50))), "must be an integer", id="float"),
    pytest.param(dict(host="h", splits=(("a", 100),)), "RevisionKey", id="not-a-key"),
    pytest.param(dict(host="", splits=((A, 100),)), "non-empty", id="empty-host"),
    pytest.param(dict(host="h", splits=()), "sum to 0", id="no-splits"),
    pytest.param(dict(host="h", splits=((A, 100),), tags={"": A}), "tags", id="empty-tag"),
])
def test_bad_route_is_rejected_with_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HostRoute(**kwargs)


def test_duplicate_host_is_rejected():
    with pytest.raises(ValueError, match="listed twice"):
        RouteTable([
            HostRoute("h.example.com", ((A, 100),)), HostRoute("H.example.com.", ((B, 100),)),
        ])


def test_route_is_immutable_and_copies_tags():
    tags = {"t": A}
    route = HostRoute("h", [(A, 100)], tags)
    tags["u"] = B
    assert dict(route.tags) == {"t": A}
    assert route.splits == ((A, 100),)
    with pytest.raises(TypeError):
        route.tags["v"] = C  # type: ignore[index]


@pytest.mark.parametrize("host, tag, want", [
    pytest.param(b"hello.default.example.com", b"canary", True, id="known"),
    pytest.param(b"HELLO.default.example.com:80", b"Canary", True, id="normalised"),
    pytest.param(b"hello.default.example.com", b"nope", False, id="unknown-tag"),
    pytest.param(b"canary-hello.default.example.com", b"canary", False, id="tag-host-has-none"),
    pytest.param(b"nowhere.example.com", b"canary", False, id="unknown-host"),
])
def test_has_tag(host, tag, want):
    assert TABLE.has_tag(host, tag) is want
