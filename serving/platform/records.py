"""The records every runtime's pods share: one mutable record per pod and per revision.

Only a platform's `scale` and each pod's supervisor task (supervisor.py) change them;
the world sees frozen `PodInfo` snapshots. A runtime subclasses `PodRecord` with what
its pods hold (processes in state.py, containers in docker_pod.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Generic, TypeVar

from dataplane.types import PodAddress, RevisionKey

from .base import PodInfo, PodPhase, PodTemplate

__all__ = ["PodRecord", "PodT", "RevisionState"]


class PodRecord:
    """One pod's mutable state shared by every runtime; only its supervisor and `scale` change it."""

    def __init__(self, name: str, key: RevisionKey, logs: Path) -> None:
        self.name, self.key = name, key
        self.phase, self.ready = PodPhase.PENDING, False
        self.started_at: float | None = None
        self.ready_since: float | None = None
        self.restarts = self.crashes_in_a_row = 0
        self.last_exit: str | None = None
        self.restart_at: float | None = None
        self.backoff_s: float | None = None
        self.stop_requested = asyncio.Event()
        self.log_path = str(logs / f"{name}.log")
        self.qp_log_path = str(logs / f"{name}.queue-proxy.log")

    def endpoint(self) -> tuple[PodAddress, int, int, int]:
        """Where the pod is reached: address, admin, metrics and user ports (the runtime's)."""
        raise NotImplementedError

    def pids(self) -> tuple[int | None, int | None]:
        """The running app's and queue-proxy's pids, None where not running (the runtime's)."""
        raise NotImplementedError

    def info(self) -> PodInfo:
        """A frozen snapshot."""
        address, admin, metrics, user = self.endpoint()
        app_pid, qp_pid = self.pids()
        return PodInfo(
            name=self.name, revision=self.key, phase=self.phase, ready=self.ready,
            address=address, admin_port=admin, metrics_port=metrics, user_port=user,
            app_pid=app_pid, queue_proxy_pid=qp_pid, started_at=self.started_at,
            restarts=self.restarts, last_exit=self.last_exit, log_path=self.log_path,
            queue_proxy_log_path=self.qp_log_path, ready_since=self.ready_since,
            restart_at=self.restart_at, backoff_s=self.backoff_s,
        )


PodT = TypeVar("PodT", bound=PodRecord)


class RevisionState(Generic[PodT]):
    """One revision: its template, its pods and their supervisor tasks."""

    def __init__(self, key: RevisionKey, template: PodTemplate) -> None:
        self.key, self.template = key, template
        self.pods: dict[str, PodT] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
