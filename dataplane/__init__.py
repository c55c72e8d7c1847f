"""The request-path library: proxy engine, breaker, stats, Stat wire format, Clock.

Everything on the request path stands on this package; it imports only the standard
library, uvloop, httptools, protobuf and prometheus_client.
"""

from .clock import Clock, FakeClock, MonotonicClock
from .stat import PROTOBUF_CONTENT_TYPE, Stat, decode_wire_stats, encode_wire_stats
from .types import PodAddress, RevisionKey

__all__ = [
    "Clock",
    "FakeClock",
    "MonotonicClock",
    "PROTOBUF_CONTENT_TYPE",
    "PodAddress",
    "RevisionKey",
    "Stat",
    "decode_wire_stats",
    "encode_wire_stats",
]
