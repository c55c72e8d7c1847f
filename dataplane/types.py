"""Small value types shared by every component on the request path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class RevisionKey:
    """A revision by namespace and name, as Knative keys it."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, order=True)
class PodAddress:
    """Where a pod's queue-proxy serves traffic (and, optionally, its stats port)."""

    host: str
    port: int
    stats_port: int | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"
