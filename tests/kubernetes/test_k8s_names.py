"""Child names as Knative's kmeta.ChildName makes them, long names hashed to 63."""

from __future__ import annotations

import re

import pytest

from serving.kubernetes import (
    child_name,
    deployment_name,
    private_service_name,
    revision_name,
    tag_service_name,
)

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")

# The cases of knative/pkg kmeta/names_test.go, so Surge names what Knative names alike.
CHILD_NAMES = [
    pytest.param("asdf", "-deployment", "asdf-deployment", id="short-fits"),
    pytest.param("f" * 63, "-deployment",
                 "ffffffffffffffffffff105d7597f637e83cc711605ac3ea4957-deployment",
                 id="long-parent-hashed"),
    pytest.param("f" * 63, "-deploy",
                 "ffffffffffffffffffffffff105d7597f637e83cc711605ac3ea4957-deploy",
                 id="shorter-suffix-keeps-more-parent"),
    pytest.param("f" * 63, "f" * 63,
                 "fffffffffffffffffffffffffffffff0502661254f13c89973cb3a83e0cbec0",
                 id="long-suffix-whole-hashed"),
    pytest.param("a", "f" * 63,
                 "ab5cfd486935decbc0d305799f4ce4414ffffffffffffffffffffffffffffff",
                 id="short-parent-long-suffix-padded"),
    pytest.param("b" * 32, "f" * 32,
                 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb329c7c81b9ab3ba71aa139066aa5625d",
                 id="suffix-of-32"),
    pytest.param("aaaa", "b---a" * 20,
                 "aaaa7a3f7966594e3f0849720eced8212c18b---ab---ab---ab---ab---ab",
                 id="padding-from-suffix"),
    pytest.param("a" * 17, "a.-.-.-.-.-.-." + "a" * 37,
                 "aaaaaaaaaaaaaaaaaa1eb10dc911444f8434af83b7225442da",
                 id="trailing-punctuation-dropped"),
    pytest.param("a" * 52, "-deployment", "a" * 52 + "-deployment", id="exactly-63"),
]


@pytest.mark.parametrize(("parent", "suffix", "want"), CHILD_NAMES)
def test_child_name_matches_kmeta(parent, suffix, want):
    got = child_name(parent, suffix)
    assert got == want
    assert len(got) <= 63 and _DNS1123_SUBDOMAIN.fullmatch(got)


def test_child_names_of_different_long_parents_differ():
    a, b = "x" * 60 + "a", "x" * 60 + "b"
    assert deployment_name(a) != deployment_name(b)
    assert len(deployment_name(a)) == 63


@pytest.mark.parametrize(("got", "want"), [
    pytest.param(revision_name("hello", 1), "hello-00001", id="revision"),
    pytest.param(revision_name("hello", 123456), "hello-123456", id="revision-past-5-digits"),
    pytest.param(deployment_name("hello-00001"), "hello-00001-deployment", id="deployment"),
    pytest.param(private_service_name("hello-00001"), "hello-00001-private", id="private"),
    pytest.param(tag_service_name("hello", "candidate"), "candidate-hello", id="tag-service"),
])
def test_names_of_a_revisions_objects(got, want):
    assert got == want
