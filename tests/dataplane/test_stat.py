"""The Stat wire format matches Knative's stat.proto field numbers."""

from __future__ import annotations

import json

import pytest

from dataplane import RevisionKey, Stat, decode_wire_stats, encode_wire_stats


def _varint_key(field: int, wire_type: int) -> int:
    return (field << 3) | wire_type


@pytest.mark.parametrize(
    ("field", "value", "number", "wire_type"),
    [
        pytest.param("pod_name", "p", 1, 2, id="pod_name=1"),
        pytest.param("average_concurrent_requests", 1.5, 2, 1, id="avg=2"),
        pytest.param("average_proxied_concurrent_requests", 1.5, 3, 1, id="proxied-avg=3"),
        pytest.param("request_count", 1.5, 4, 1, id="count=4"),
        pytest.param("proxied_request_count", 1.5, 5, 1, id="proxied-count=5"),
        pytest.param("process_uptime", 1.5, 6, 1, id="uptime=6"),
        pytest.param("timestamp", 7, 7, 0, id="timestamp=7"),
    ],
)
def test_each_field_has_knatives_number_and_type(field, value, number, wire_type):
    data = Stat(**{field: value}).to_protobuf()
    assert data[0] == _varint_key(number, wire_type)
    assert getattr(Stat.from_protobuf(data), field) == value


def test_known_bytes_decode():
    # pod_name "p", average_concurrent_requests 3.0, as Knative's Go code encodes it.
    data = bytes.fromhex("0a0170110000000000000840")
    assert Stat.from_protobuf(data) == Stat(pod_name="p", average_concurrent_requests=3.0)


def test_wire_batch_round_trips_revision_keys():
    items = [
        (RevisionKey("default", "hello-00001"), Stat(average_concurrent_requests=1.0)),
        (RevisionKey("ns2", "other-00002"), Stat(request_count=4.0, timestamp=1_700_000_000)),
    ]
    assert decode_wire_stats(encode_wire_stats(items)) == items


def test_wire_envelope_field_numbers():
    data = encode_wire_stats([(RevisionKey("a", "b"), Stat(pod_name="x"))])
    # WireStatMessages.messages = 1 (length-delimited) holding namespace=1, name=2, stat=3.
    assert data[0] == _varint_key(1, 2)
    inner = data[2:]
    assert inner[0] == _varint_key(1, 2) and inner[2:3] == b"a"
    assert inner[3] == _varint_key(2, 2) and inner[5:6] == b"b"
    assert inner[6] == _varint_key(3, 2)


def test_malformed_bytes_raise_value_error():
    with pytest.raises(ValueError, match="malformed Stat"):
        Stat.from_protobuf(b"\x0a\xff")


def test_json_rendering_uses_proto_field_names():
    stat = Stat(pod_name="p", request_count=2.0)
    parsed = json.loads(stat.to_json())
    assert parsed["pod_name"] == "p" and parsed["request_count"] == 2.0
    assert Stat.from_dict(parsed) == stat
    with pytest.raises(ValueError, match="bogus"):
        Stat.from_dict({"bogus": 1})
