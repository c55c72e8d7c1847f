"""The local platform's bookkeeping: one mutable record per pod and per revision.

Only `LocalPlatform` (its `scale` and each pod's supervisor task) changes these; the
world sees frozen `PodInfo` snapshots.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from dataplane.types import PodAddress, RevisionKey

from .base import PodInfo, PodPhase, PodTemplate
from .pod import PodPorts
from .process import ChildProcess

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


class PodState:
    """One pod's mutable state; only its supervisor task and `scale` change it."""

    def __init__(self, name: str, key: RevisionKey, ports: PodPorts, logs: Path) -> None:
        self.name, self.key, self.ports = name, key, ports
        self.phase = PodPhase.PENDING
        self.ready = False
        self.app: ChildProcess | None = None
        self.qp: ChildProcess | None = None
        self.started_at: float | None = None
        self.ready_since: float | None = None
        self.restarts = 0
        self.crashes_in_a_row = 0
        self.last_exit: str | None = None
        self.restart_at: float | None = None
        self.backoff_s: float | None = None
        self.stop_requested = asyncio.Event()
        self.log_path = str(logs / f"{name}.log")
        self.qp_log_path = str(logs / f"{name}.queue-proxy.log")

    def info(self) -> PodInfo:
        """A frozen snapshot."""
        p = self.ports
        return PodInfo(
            name=self.name, revision=self.key, phase=self.phase, ready=self.ready,
            address=PodAddress("127.0.0.1", p.serving, p.stats), admin_port=p.admin,
            metrics_port=p.metrics, user_port=p.user, app_pid=_running_pid(self.app),
            queue_proxy_pid=_running_pid(self.qp), started_at=self.started_at,
            restarts=self.restarts, last_exit=self.last_exit, log_path=self.log_path,
            queue_proxy_log_path=self.qp_log_path, ready_since=self.ready_since,
            restart_at=self.restart_at, backoff_s=self.backoff_s,
        )


class RevisionState:
    """One revision: its template, its pods and their supervisor tasks."""

    def __init__(self, key: RevisionKey, template: PodTemplate) -> None:
        self.key, self.template = key, template
        self.pods: dict[str, PodState] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}


def _running_pid(child: ChildProcess | None) -> int | None:
    return child.pid if child is not None and not child.has_exited else None


def kill_pod_now(pod: PodState) -> None:
    """SIGKILL a pod's processes at once; they are reaped when their exit is seen."""
    for child in (pod.qp, pod.app):
        if child is not None:
            child.kill_and_reap()

