"""The local platform: each pod is the user's program plus a `python -m queue_proxy`.

Theory of operation. The pod lifecycle (phases, probing, back-off, the removal
sequence) is `PodSupervisor`'s (supervisor.py); this module is its runtime for process
groups:

    start        spawn the app (group leader) and the queue-proxy (same group) on fresh
                 loopback ports; a restart after a crash picks fresh ports again
    crash        either process exited on its own: the app's death SIGKILLs the group
                 (the queue-proxy has nothing left to drain); a queue-proxy death SIGTERMs
                 the app, SIGKILL after `crash_grace_s`
    stop         SIGTERM to the queue-proxy (it answers health checks 503, waits its
                 quiet period, then for its in-flight requests, and exits), then SIGTERM
                 to the app's group, SIGKILL after `termination_grace_s`

Worked example (defaults, drain quiet 2 s): scale(key, 0) at t=0 with one 3 s request in
flight since t=-1: the hook runs at t=0; SIGTERM to the queue-proxy at once; its quiet
period ends at t=2, the request finishes at t=2, the queue-proxy exits; the app gets
SIGTERM and exits at about t=2.1; the pod disappears from `pods(key)`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Mapping
from pathlib import Path

import queue_proxy
from dataplane.clock import Clock
from dataplane.types import RevisionKey

from .base import PlatformError, PodPhase, PodTemplate, require_command
from .pod import PodPorts, RestartBackoff, app_command, app_environment, queue_proxy_environment
from .process import ChildProcess, describe_returncode, spawn, stop_group, stop_process
from .state import LocalPlatformStats, PodState, kill_pod_now
from .supervisor import PodSupervisor, RevisionState

__all__ = ["LocalPlatform", "LocalPlatformStats"]

_log = logging.getLogger(__name__)

_QUEUE_PROXY_PATH = str(Path(queue_proxy.__file__).resolve().parent.parent)


class LocalPlatform(PodSupervisor[PodState]):
    """Runs revisions' pods as local process groups (see the module docstring)."""

    runs_images = False  # a pod is the container's `command`; an image alone is rejected
    _platform_name = "local platform"
    _discard_words = "killing the pod"

    def __init__(self, state_dir: str | os.PathLike[str], clock: Clock, *, drain_quiet_s: float = 2.0,
                 python: str = sys.executable, ready_poll_s: float = 0.05, probe_period_s: float = 2.0,
                 probe_timeout_s: float = 11.0, restart_backoff: RestartBackoff = RestartBackoff(),
                 termination_grace_s: float = 10.0, crash_grace_s: float = 2.0,
                 base_env: Mapping[str, str] | None = None, working_dir: str | None = None) -> None:
        # probe_timeout_s: the queue-proxy holds a health check up to 10 s while it
        # probes a starting app aggressively (reference 4.6); wait a little longer.
        super().__init__(Path(state_dir), clock, _log, drain_quiet_s=drain_quiet_s,
                         ready_poll_s=ready_poll_s, probe_period_s=probe_period_s,
                         probe_timeout_s=probe_timeout_s, restart_backoff=restart_backoff,
                         termination_grace_s=termination_grace_s)
        self._python = python
        self._crash_grace_s = crash_grace_s
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._working_dir = working_dir or os.getcwd()

    def stats(self) -> LocalPlatformStats:
        """Counts of revisions and pods by state, starts, crashes and reserved ports."""
        pods = list(self._all_pods())
        count = lambda phase: sum(1 for p in pods if p.phase is phase)  # noqa: E731
        return LocalPlatformStats(
            revisions=len(self._revisions), pods=len(pods), ready=sum(p.ready for p in pods),
            pending=count(PodPhase.PENDING), terminating=count(PodPhase.TERMINATING),
            failed=count(PodPhase.FAILED), starts=self._starts, crashes=self._crashes,
            ports_reserved=len(self._ports.reserved),
        )

    # -- admission and ports --------------------------------------------------------------

    def _rt_admit(self, key: RevisionKey, template: PodTemplate) -> None:
        require_command(template.command, template.image)
        if template.user_port is not None:
            if not 1 <= template.user_port <= 65535:
                raise PlatformError(f"{key}: user port {template.user_port} must be in 1-65535")
            self._ports.reserve(template.user_port)

    def _rt_scaling_up(self, rev: RevisionState[PodState], n: int) -> None:
        if rev.template.user_port is not None and n > 1:
            _log.warning("%s: %d pods share the fixed port %d; only one can listen",
                         rev.key, n, rev.template.user_port)

    def _allocate_ports(self, template: PodTemplate) -> PodPorts:
        serving, stats, admin, metrics = self._ports.allocate(4)
        user = template.user_port if template.user_port is not None else self._ports.allocate(1)[0]
        return PodPorts(serving, stats, admin, metrics, user)

    def _release_ports(self, ports: PodPorts, template: PodTemplate) -> None:
        self._ports.release((ports.serving, ports.stats, ports.admin, ports.metrics))
        if ports.user != template.user_port:
            self._ports.release((ports.user,))

    def _rt_new_pod(self, rev: RevisionState[PodState], name: str) -> PodState:
        return PodState(name, rev.key, self._allocate_ports(rev.template), self._logs)

    def _rt_release(self, rev: RevisionState[PodState], pod: PodState) -> None:
        self._release_ports(pod.ports, rev.template)

    # -- processes --------------------------------------------------------------------------

    async def _rt_launch(self, rev: RevisionState[PodState], pod: PodState) -> str | None:
        template, key = rev.template, rev.key
        if pod.restarts:  # a restart: fresh ports, in case ours were taken
            self._release_ports(pod.ports, template)
            pod.ports = self._allocate_ports(template)
        ports = pod.ports
        argv = app_command(template, key, ports.user, python=self._python)
        cwd = os.path.join(self._working_dir, template.working_dir or "")
        try:
            pod.app = spawn(argv, role="app", env=app_environment(self._base_env, template, key, ports.user),
                            cwd=cwd, log_path=pod.log_path)
        except OSError as exc:
            pod.app = None
            return f"app could not start: {exc.strerror or exc} ({argv[0]!r} in {cwd})"
        qp_env = queue_proxy_environment(self._base_env, template, key, pod.name, ports,
                                         drain_quiet_s=self._drain_quiet_s, pythonpath=_QUEUE_PROXY_PATH)
        try:
            pod.qp = spawn([self._python, "-m", "queue_proxy"], role="queue-proxy", env=qp_env,
                           cwd=str(self._state_dir), log_path=pod.qp_log_path, process_group=pod.app.pid)
        except (OSError, subprocess.SubprocessError) as exc:
            pod.qp = None
            await stop_group(pod.app, [], grace_s=0.0, clock=self._clock, sig=signal.SIGKILL)
            pod.app = None
            return f"queue-proxy could not start: {exc}"
        self._note(pod, f"started: app pid {pod.app.pid} on port {ports.user} ({' '.join(argv)}), "
                        f"queue-proxy pid {pod.qp.pid} on port {ports.serving}")
        return None

    def _rt_exits(self, pod: PodState) -> tuple[Awaitable[object], Awaitable[object]]:
        assert pod.app is not None and pod.qp is not None
        return pod.app.wait_exited(), pod.qp.wait_exited()

    def _rt_exited(self, pod: PodState, app: asyncio.Future[object],
                   qp: asyncio.Future[object]) -> ChildProcess:
        assert pod.app is not None
        return pod.app if pod.app.has_exited or pod.qp is None else pod.qp

    async def _rt_stop_crashed(self, pod: PodState, exited: object) -> str:
        app, qp = pod.app, pod.qp
        assert app is not None and isinstance(exited, ChildProcess)
        # The app's death leaves the queue-proxy nothing to drain: kill the group. A
        # queue-proxy death gives the app a short grace to finish and clean up.
        sig = signal.SIGKILL if exited is app else signal.SIGTERM
        await stop_group(app, [qp] if qp else [], grace_s=self._crash_grace_s, clock=self._clock, sig=sig)
        pod.app = pod.qp = None
        return f"{exited.role} {describe_returncode(exited.returncode)}"

    def _rt_has_sidecar(self, pod: PodState) -> bool:
        return pod.qp is not None

    async def _rt_stop_sidecar(self, pod: PodState, bound_s: float) -> None:
        assert pod.qp is not None
        await stop_process(pod.qp, grace_s=bound_s, clock=self._clock)

    async def _rt_stop_app(self, pod: PodState) -> None:
        if pod.app is not None:
            await stop_group(pod.app, [], grace_s=self._termination_grace_s, clock=self._clock)

    async def _rt_remove(self, pod: PodState) -> None:
        app, qp = pod.app, pod.qp
        if app is not None or qp is not None:
            self._note(pod, "stopped: " + ", ".join(
                f"{c.role} {describe_returncode(c.returncode)}" for c in (app, qp) if c is not None))
        pod.app = pod.qp = None

    async def _rt_discard(self, pod: PodState, cancelled: bool) -> None:
        kill_pod_now(pod)  # synchronous: no await before a cancellation propagates

    def _rt_kill_now(self, pods: list[PodState]) -> None:
        for pod in pods:
            kill_pod_now(pod)
