"""The Stat record and its wire format, field for field Knative's stat.proto.

Knative's `pkg/autoscaler/metrics/stat.proto` declares three messages; we build the same
descriptor at import time with the protobuf library (no generated code, so any protobuf
runtime >= 4 works) and keep a plain frozen dataclass for everything else to use:

    Stat              pod_name=1 (string), average_concurrent_requests=2 (double),
                      average_proxied_concurrent_requests=3 (double),
                      request_count=4 (double), proxied_request_count=5 (double),
                      process_uptime=6 (double), timestamp=7 (int64)
    WireStatMessage   namespace=1 (string), name=2 (string), stat=3 (Stat)
    WireStatMessages  messages=1 (repeated WireStatMessage)

Example: `Stat(pod_name="p", average_concurrent_requests=3.0).to_protobuf()` is the bytes
`0a 01 70 11 00 00 00 00 00 00 08 40` that Knative's autoscaler decodes to the same stat.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .types import RevisionKey

__all__ = ["Stat", "encode_wire_stats", "decode_wire_stats", "PROTOBUF_CONTENT_TYPE"]

PROTOBUF_CONTENT_TYPE = "application/protobuf"

_F = descriptor_pb2.FieldDescriptorProto


def _build_messages() -> tuple[type, type, type]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="surge/dataplane/stat.proto", package="metrics", syntax="proto3"
    )
    stat = fdp.message_type.add(name="Stat")
    for number, (name, ftype) in enumerate(
        [
            ("pod_name", _F.TYPE_STRING),
            ("average_concurrent_requests", _F.TYPE_DOUBLE),
            ("average_proxied_concurrent_requests", _F.TYPE_DOUBLE),
            ("request_count", _F.TYPE_DOUBLE),
            ("proxied_request_count", _F.TYPE_DOUBLE),
            ("process_uptime", _F.TYPE_DOUBLE),
            ("timestamp", _F.TYPE_INT64),
        ],
        start=1,
    ):
        stat.field.add(name=name, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
    wire = fdp.message_type.add(name="WireStatMessage")
    wire.field.add(name="namespace", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    wire.field.add(name="name", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    wire.field.add(
        name="stat", number=3, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
        type_name=".metrics.Stat",
    )
    many = fdp.message_type.add(name="WireStatMessages")
    many.field.add(
        name="messages", number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
        type_name=".metrics.WireStatMessage",
    )
    # A private pool: the default one is process-global state another library could own.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("metrics.Stat")),
        get(pool.FindMessageTypeByName("metrics.WireStatMessage")),
        get(pool.FindMessageTypeByName("metrics.WireStatMessages")),
    )


StatMessage, WireStatMessage, WireStatMessages = _build_messages()


@dataclass(frozen=True, slots=True)
class Stat:
    """One pod's (or one activator's) report for one period, as Knative's Stat."""

    pod_name: str = ""
    average_concurrent_requests: float = 0.0
    average_proxied_concurrent_requests: float = 0.0
    request_count: float = 0.0
    proxied_request_count: float = 0.0
    process_uptime: float = 0.0
    timestamp: int = 0

    def to_message(self):  # -> StatMessage
        """The protobuf message for this stat."""
        return StatMessage(**asdict(self))

    @classmethod
    def from_message(cls, msg) -> Stat:
        """Build from a protobuf `Stat` message."""
        return cls(**{f.name: getattr(msg, f.name) for f in fields(cls)})

    def to_protobuf(self) -> bytes:
        """Serialize as Knative's `Stat` message."""
        return self.to_message().SerializeToString()

    @classmethod
    def from_protobuf(cls, data: bytes) -> Stat:
        """Parse Knative's `Stat` message; raises `ValueError` on malformed bytes."""
        msg = StatMessage()
        try:
            msg.ParseFromString(data)
        except Exception as exc:  # protobuf raises its own DecodeError type
            raise ValueError(f"malformed Stat protobuf: {exc}") from exc
        return cls.from_message(msg)

    def to_dict(self) -> dict:
        """The stat as a plain dict with the proto's field names."""
        return asdict(self)

    def to_json(self) -> str:
        """A JSON rendering for people (same field names as the proto)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Stat:
        """Build from `to_dict()` output; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Stat fields: {', '.join(unknown)}")
        return cls(**data)


def encode_wire_stats(items: Iterable[tuple[RevisionKey, Stat]]) -> bytes:
    """Serialize (revision, stat) pairs as one `WireStatMessages` batch."""
    batch = WireStatMessages()
    for key, stat in items:
        batch.messages.add(namespace=key.namespace, name=key.name, stat=stat.to_message())
    return batch.SerializeToString()


def decode_wire_stats(data: bytes) -> list[tuple[RevisionKey, Stat]]:
    """Parse a `WireStatMessages` batch; raises `ValueError` on malformed bytes."""
    batch = WireStatMessages()
    try:
        batch.ParseFromString(data)
    except Exception as exc:
        raise ValueError(f"malformed WireStatMessages protobuf: {exc}") from exc
    return [
        (RevisionKey(m.namespace, m.name), Stat.from_message(m.stat)) for m in batch.messages
    ]
