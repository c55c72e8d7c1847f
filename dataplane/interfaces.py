"""The small interfaces where the activator, the autoscaler and the control plane meet.

`activator` and `autoscaler` never import each other (DESIGN.md); both import these.
In local mode the control plane connects them in-process; between processes the same
shapes travel over HTTP/websocket.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from .stat import Stat
from .types import PodAddress, RevisionKey


class StatSink(Protocol):
    """Where pushed stats go (the autoscaler's ingest): the activator's per-second
    concurrency reports and its cold-start poke (reference 3.4)."""

    def send(self, key: RevisionKey, stat: Stat) -> None: ...


class Mode(enum.Enum):
    """How the ingress reaches a revision (the SKS mode in Knative).

    PROXY: requests are held and throttled by the activator (no ready pod, or too little
    spare burst capacity). SERVE: requests go straight to ready pods.
    """

    PROXY = "proxy"
    SERVE = "serve"


@dataclass(frozen=True, slots=True)
class RevisionEndpoints:
    """Everything the activator needs to send traffic to one revision.

    `pods` lists every pod the platform has started and not yet begun to remove, ready
    or not: the activator probes each new pod itself (reference 5.3) and routes only to
    those whose probe passed. Removing a pod from this list is the signal to stop
    routing to it (scale-down removes it here before draining it).
    """

    key: RevisionKey
    pods: tuple[PodAddress, ...] = ()
    mode: Mode = Mode.PROXY
    container_concurrency: int = 0
    timeout_s: float = 300.0
    response_start_timeout_s: float | None = None
    idle_timeout_s: float | None = None


class EndpointsSink(Protocol):
    """What the control plane drives in the activator."""

    def set_revision(self, endpoints: RevisionEndpoints) -> None: ...

    def remove_revision(self, key: RevisionKey) -> None: ...
