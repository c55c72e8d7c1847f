"""The local platform's bookkeeping: one mutable record per pod and per revision.

Only `LocalPlatform` (its `scale` and each pod's supervisor task) changes these; the
world sees frozen `PodInfo` snapshots. The fields every runtime shares, and the
revision record, live in supervisor.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataplane.types import PodAddress, RevisionKey

from .pod import PodPorts
from .process import ChildProcess
from .records import PodRecord, RevisionState

__all__ = ["LocalPlatformStats", "PodState", "RevisionState", "kill_pod_now"]


@dataclass(frozen=True, slots=True)
class LocalPlatformStats:
    """A snapshot of the local platform."""

    revisions: int
    pods: int
    ready: int
    pending: int
    terminating: int
    failed: int
    starts: int
    crashes: int
    ports_reserved: int


class PodState(PodRecord):
    """One local pod's mutable state: its ports and its two processes."""

    def __init__(self, name: str, key: RevisionKey, ports: PodPorts, logs: Path) -> None:
        super().__init__(name, key, logs)
        self.ports = ports
        self.app: ChildProcess | None = None
        self.qp: ChildProcess | None = None

    def endpoint(self) -> tuple[PodAddress, int, int, int]:
        """The queue-proxy's loopback address (serving, stats) and the pod's other ports."""
        p = self.ports
        return PodAddress("127.0.0.1", p.serving, p.stats), p.admin, p.metrics, p.user

    def pids(self) -> tuple[int | None, int | None]:
        """The app's and the queue-proxy's pids while they run."""
        return _running_pid(self.app), _running_pid(self.qp)


def _running_pid(child: ChildProcess | None) -> int | None:
    return child.pid if child is not None and not child.has_exited else None


def kill_pod_now(pod: PodState) -> None:
    """SIGKILL a pod's processes at once; they are reaped when their exit is seen."""
    for child in (pod.qp, pod.app):
        if child is not None:
            child.kill_and_reap()

