"""The local platform: each pod is the user's program plus a `python -m queue_proxy`.

Theory of operation. Every pod has one supervisor task that walks it through its life:

    PENDING      spawn app (group leader) and queue-proxy (same group) on fresh ports;
                 probe the queue-proxy (`K-Network-Probe: queue`) every `ready_poll_s`
    RUNNING      the first probe answered 200 `queue`: ready. Probed every
                 `probe_period_s`; three failures in a row -> not ready, one pass -> ready
    FAILED       either process exited on its own: both are stopped (the app's death
                 SIGKILLs the group; a queue-proxy death SIGTERMs the app), then the pod
                 waits out its back-off and starts again (same name, new ports)
    TERMINATING  scale-down, delete or close: the removal hook (the activator stops
                 routing here), SIGTERM to the queue-proxy (it answers health checks 503,
                 waits its quiet period, then for its in-flight requests, and exits),
                 then SIGTERM to the app's group, SIGKILL after `termination_grace_s`

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
from collections.abc import Callable, Mapping
from pathlib import Path

import queue_proxy
from dataplane.clock import Clock
from dataplane.types import RevisionKey

from .base import PlatformError, PodInfo, PodPhase, PodRemovalHook, PodsListener, PodTemplate, require_command
from .pod import (
    PodPorts, RestartBackoff, app_command, app_environment, choose_pods_to_remove, new_pod_name,
    queue_proxy_environment,
)
from .ports import PortAllocator
from .probe import probe_queue_proxy
from .process import describe_returncode, spawn, stop_group, stop_process
from .state import LocalPlatformStats, PodState, RevisionState, kill_pod_now

__all__ = ["LocalPlatform", "LocalPlatformStats"]

_log = logging.getLogger(__name__)

# The queue-proxy bounds its own shutdown by quiet period + revision timeout + 5 s;
# this is that bound plus a little, after which it is killed.
_QUEUE_PROXY_EXIT_MARGIN_S = 10.0
_NOT_READY_AFTER_FAILURES = 3  # Kubernetes' default failureThreshold
_HOOK_TIMEOUT_S = 10.0
_QUEUE_PROXY_PATH = str(Path(queue_proxy.__file__).resolve().parent.parent)


class LocalPlatform:
    """Runs revisions' pods as local process groups (see the module docstring)."""

    runs_images = False  # a pod is the container's `command`; an image alone is rejected

    def __init__(self, state_dir: str | os.PathLike[str], clock: Clock, *, drain_quiet_s: float = 2.0,
                 python: str = sys.executable, ready_poll_s: float = 0.05, probe_period_s: float = 2.0,
                 probe_timeout_s: float = 11.0, restart_backoff: RestartBackoff = RestartBackoff(),
                 termination_grace_s: float = 10.0, crash_grace_s: float = 2.0,
                 base_env: Mapping[str, str] | None = None, working_dir: str | None = None) -> None:
        # probe_timeout_s: the queue-proxy holds a health check up to 10 s while it
        # probes a starting app aggressively (reference 4.6); wait a little longer.
        self._state_dir = Path(state_dir)
        self._logs = self._state_dir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._drain_quiet_s = drain_quiet_s
        self._python = python
        self._ready_poll_s = ready_poll_s
        self._probe_period_s = probe_period_s
        self._probe_timeout_s = probe_timeout_s
        self._backoff = restart_backoff
        self._termination_grace_s = termination_grace_s
        self._crash_grace_s = crash_grace_s
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._working_dir = working_dir or os.getcwd()
        self._ports = PortAllocator()
        self._revisions: dict[RevisionKey, RevisionState] = {}
        self._listeners: list[PodsListener] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._hook: PodRemovalHook | None = None
        self._closed = False
        self._starts = 0
        self._crashes = 0

    # -- the Platform interface -------------------------------------------------------

    async def ensure(self, key: RevisionKey, template: PodTemplate) -> None:
        """Register a revision, or replace its template for pods started from now on."""
        self._check_open()
        require_command(template.command, template.image)
        if template.user_port is not None:
            if not 1 <= template.user_port <= 65535:
                raise PlatformError(f"{key}: user port {template.user_port} must be in 1-65535")
            self._ports.reserve(template.user_port)
        rev = self._revisions.get(key)
        if rev is None:
            self._revisions[key] = RevisionState(key, template)
        else:
            rev.template = template

    async def scale(self, key: RevisionKey, n: int) -> None:
        """Start pods up to `n` and begin draining the extra ones; returns without waiting."""
        self._check_open()
        if n < 0:
            raise ValueError(f"n: {n} must be >= 0")
        rev = self._revisions.get(key)
        if rev is None:
            raise PlatformError(f"revision {key} is unknown to the local platform (ensure it first)")
        active = [p for p in rev.pods.values() if not p.stop_requested.is_set()]
        if n > len(active):
            if rev.template.user_port is not None and n > 1:
                _log.warning("%s: %d pods share the fixed port %d; only one can listen",
                             key, n, rev.template.user_port)
            for _ in range(n - len(active)):
                self._add_pod(rev)
        elif n < len(active):
            for name in choose_pods_to_remove([p.info() for p in active], len(active) - n):
                self._request_stop(rev.pods[name])
        self._changed(rev)

    async def delete(self, key: RevisionKey) -> None:
        """Drain and stop every pod of a revision, then forget it."""
        rev = self._revisions.get(key)
        if rev is None:
            return
        for pod in rev.pods.values():
            self._request_stop(pod)
        self._changed(rev)
        await asyncio.gather(*rev.tasks.values(), return_exceptions=True)
        if self._revisions.get(key) is rev:
            del self._revisions[key]

    def pods(self, key: RevisionKey) -> tuple[PodInfo, ...]:
        """Every pod of a revision, by name."""
        rev = self._revisions.get(key)
        return tuple(rev.pods[n].info() for n in sorted(rev.pods)) if rev else ()

    def subscribe(self, listener: PodsListener) -> Callable[[], None]:
        """Call `listener(key, pods)` on every change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def set_pod_removal_hook(self, hook: PodRemovalHook | None) -> None:
        """Install the coroutine awaited before each pod's queue-proxy gets SIGTERM."""
        self._hook = hook

    async def wait_pods(self, key: RevisionKey,
                        predicate: Callable[[tuple[PodInfo, ...]], bool]) -> tuple[PodInfo, ...]:
        """Wait until `predicate(pods(key))` holds; bound it with asyncio.timeout."""
        loop = asyncio.get_running_loop()
        while not predicate(pods := self.pods(key)):
            fut = loop.create_future()
            self._waiters.add(fut)
            try:
                await fut
            finally:
                self._waiters.discard(fut)
        return pods

    async def aclose(self) -> None:
        """Drain and stop every pod; if cancelled, kill them all at once."""
        self._closed = True
        tasks = []
        for rev in self._revisions.values():
            for pod in rev.pods.values():
                self._request_stop(pod)
            self._changed(rev)
            tasks.extend(rev.tasks.values())
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            self.kill_all()
            raise

    def kill_all(self) -> None:
        """SIGKILL every pod's processes now (no drain); for emergencies and exit paths."""
        for rev in self._revisions.values():
            for pod in rev.pods.values():
                kill_pod_now(pod)
            for task in rev.tasks.values():
                task.cancel()

    def stats(self) -> LocalPlatformStats:
        """Counts of revisions and pods by state, starts, crashes and reserved ports."""
        pods = [p for rev in self._revisions.values() for p in rev.pods.values()]
        count = lambda phase: sum(1 for p in pods if p.phase is phase)  # noqa: E731
        return LocalPlatformStats(
            revisions=len(self._revisions), pods=len(pods), ready=sum(p.ready for p in pods),
            pending=count(PodPhase.PENDING), terminating=count(PodPhase.TERMINATING),
            failed=count(PodPhase.FAILED), starts=self._starts, crashes=self._crashes,
            ports_reserved=len(self._ports.reserved),
        )

    # -- bookkeeping --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PlatformError("the local platform is shut down")

    def _allocate_ports(self, template: PodTemplate) -> PodPorts:
        serving, stats, admin, metrics = self._ports.allocate(4)
        user = template.user_port if template.user_port is not None else self._ports.allocate(1)[0]
        return PodPorts(serving, stats, admin, metrics, user)

    def _release_ports(self, ports: PodPorts, template: PodTemplate) -> None:
        self._ports.release((ports.serving, ports.stats, ports.admin, ports.metrics))
        if ports.user != template.user_port:
            self._ports.release((ports.user,))

    def _add_pod(self, rev: RevisionState) -> None:
        name = new_pod_name(rev.key.name, rev.pods)
        pod = PodState(name, rev.key, self._allocate_ports(rev.template), self._logs)
        rev.pods[pod.name] = pod
        task = asyncio.get_running_loop().create_task(self._supervise(rev, pod), name=f"pod {pod.name}")
        rev.tasks[pod.name] = task
        task.add_done_callback(lambda t: rev.tasks.pop(pod.name, None))

    def _request_stop(self, pod: PodState) -> None:
        pod.stop_requested.set()
        pod.phase, pod.ready, pod.restart_at = PodPhase.TERMINATING, False, None

    def _changed(self, rev: RevisionState) -> None:
        pods = self.pods(rev.key)
        for listener in list(self._listeners):
            try:
                listener(rev.key, pods)
            except Exception:  # a listener's bug must not stop pods from being managed
                _log.exception("pods listener %r failed for %s", listener, rev.key)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    def _note(self, pod: PodState, message: str) -> None:
        # Platform events go into the pod's log beside the app's own output, so
        # `surge logs` tells the whole story (start, crash, back-off, stop).
        _log.info("pod %s: %s", pod.name, message)
        try:
            with open(pod.log_path, "a", encoding="utf-8") as log:
                log.write(f"surge: {message}\n")
        except OSError as exc:
            _log.warning("pod %s: cannot write %s: %s", pod.name, pod.log_path, exc)

    # -- one pod's life -----------------------------------------------------------------

    async def _supervise(self, rev: RevisionState, pod: PodState) -> None:
        try:
            while not pod.stop_requested.is_set():
                if await self._start(rev, pod) and not await self._watch(rev, pod):
                    break  # asked to stop while running
                if pod.app is not None:
                    await self._stop_crashed(rev, pod)
                if not pod.stop_requested.is_set():
                    await self._back_off(rev, pod)
            await self._drain(rev, pod)
        except asyncio.CancelledError:
            kill_pod_now(pod)
            raise
        except Exception:  # a bug here must not leave processes behind unseen
            _log.exception("pod %s: supervisor failed; killing the pod", pod.name)
            kill_pod_now(pod)
        finally:
            self._release_ports(pod.ports, rev.template)
            rev.pods.pop(pod.name, None)
            self._changed(rev)

    async def _start(self, rev: RevisionState, pod: PodState) -> bool:
        template, key = rev.template, rev.key
        if pod.started_at is not None:  # a restart: fresh ports, in case ours were taken
            self._release_ports(pod.ports, template)
            pod.ports = self._allocate_ports(template)
            pod.restarts += 1
        ports = pod.ports
        pod.phase, pod.ready, pod.ready_since = PodPhase.PENDING, False, None
        pod.restart_at = pod.backoff_s = None
        pod.started_at = self._clock.now()
        self._starts += 1
        argv = app_command(template, key, ports.user, python=self._python)
        cwd = os.path.join(self._working_dir, template.working_dir or "")
        try:
            pod.app = spawn(argv, role="app", env=app_environment(self._base_env, template, key, ports.user),
                            cwd=cwd, log_path=pod.log_path)
        except OSError as exc:
            pod.app = None
            self._start_failed(pod, f"app could not start: {exc.strerror or exc} ({argv[0]!r} in {cwd})")
            return False
        qp_env = queue_proxy_environment(self._base_env, template, key, pod.name, ports,
                                         drain_quiet_s=self._drain_quiet_s, pythonpath=_QUEUE_PROXY_PATH)
        try:
            pod.qp = spawn([self._python, "-m", "queue_proxy"], role="queue-proxy", env=qp_env,
                           cwd=str(self._state_dir), log_path=pod.qp_log_path, process_group=pod.app.pid)
        except (OSError, subprocess.SubprocessError) as exc:
            pod.qp = None
            await stop_group(pod.app, [], grace_s=0.0, clock=self._clock, sig=signal.SIGKILL)
            pod.app = None
            self._start_failed(pod, f"queue-proxy could not start: {exc}")
            return False
        self._note(pod, f"started: app pid {pod.app.pid} on port {ports.user} ({' '.join(argv)}), "
                        f"queue-proxy pid {pod.qp.pid} on port {ports.serving}")
        self._changed(rev)
        return True

    def _start_failed(self, pod: PodState, reason: str) -> None:
        # Kubernetes treats a container that cannot start like one that crashed.
        self._crashes += 1
        pod.crashes_in_a_row = self._backoff.consecutive(pod.crashes_in_a_row, None)
        pod.last_exit = reason

    async def _watch(self, rev: RevisionState, pod: PodState) -> bool:
        """Until a process exits (True: a crash) or a stop is requested (False)."""
        assert pod.app is not None and pod.qp is not None
        prober = asyncio.ensure_future(self._probe_loop(rev, pod))
        waits = [asyncio.ensure_future(w) for w in
                 (pod.app.wait_exited(), pod.qp.wait_exited(), pod.stop_requested.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (prober, *waits):
                fut.cancel()
            await asyncio.gather(prober, *waits, return_exceptions=True)
        return not pod.stop_requested.is_set()

    async def _probe_loop(self, rev: RevisionState, pod: PodState) -> None:
        failures = 0
        while True:
            ok = await probe_queue_proxy("127.0.0.1", pod.ports.serving, self._probe_timeout_s)
            if pod.stop_requested.is_set():
                return  # a pod being removed never turns ready again, whatever the probe said
            failures = 0 if ok else failures + 1
            if ok and not pod.ready:
                pod.ready, pod.phase = True, PodPhase.RUNNING
                pod.ready_since = self._clock.now()
                self._note(pod, f"ready after {pod.ready_since - (pod.started_at or 0.0):.2f}s")
                self._changed(rev)
            elif pod.ready and failures >= _NOT_READY_AFTER_FAILURES:
                pod.ready, pod.ready_since = False, None
                self._note(pod, f"not ready: {failures} health checks failed in a row")
                self._changed(rev)
            await self._clock.sleep(self._probe_period_s if pod.ready else self._ready_poll_s)

    async def _stop_crashed(self, rev: RevisionState, pod: PodState) -> None:
        app, qp = pod.app, pod.qp
        assert app is not None
        crashed = app if app.has_exited or qp is None else qp
        ready_for = None if pod.ready_since is None else self._clock.now() - pod.ready_since
        pod.ready = False
        if not pod.stop_requested.is_set():
            pod.phase = PodPhase.FAILED
        self._changed(rev)
        # The app's death leaves the queue-proxy nothing to drain: kill the group. A
        # queue-proxy death gives the app a short grace to finish and clean up.
        sig = signal.SIGKILL if crashed is app else signal.SIGTERM
        await stop_group(app, [qp] if qp else [], grace_s=self._crash_grace_s, clock=self._clock, sig=sig)
        self._crashes += 1
        pod.crashes_in_a_row = self._backoff.consecutive(pod.crashes_in_a_row, ready_for)
        pod.last_exit = f"{crashed.role} {describe_returncode(crashed.returncode)}"
        pod.app = pod.qp = None

    async def _back_off(self, rev: RevisionState, pod: PodState) -> None:
        delay = self._backoff.delay(max(pod.crashes_in_a_row, 1))
        pod.phase, pod.ready = PodPhase.FAILED, False
        pod.backoff_s, pod.restart_at = delay, self._clock.now() + delay
        self._note(pod, f"{pod.last_exit}; restarting in {delay:g}s")
        self._changed(rev)
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        stopper = asyncio.ensure_future(pod.stop_requested.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)

    async def _drain(self, rev: RevisionState, pod: PodState) -> None:
        pod.phase, pod.ready = PodPhase.TERMINATING, False
        self._changed(rev)
        if self._hook is not None:
            try:
                async with asyncio.timeout(_HOOK_TIMEOUT_S):
                    await self._hook(pod.info())
            except Exception:  # stopping must go on: the pod is leaving either way
                _log.exception("pod %s: removal hook failed", pod.name)
        app, qp = pod.app, pod.qp
        if qp is not None:
            self._note(pod, "stopping: SIGTERM to the queue-proxy (drain)")
            bound = self._drain_quiet_s + rev.template.timeout_s + _QUEUE_PROXY_EXIT_MARGIN_S
            await stop_process(qp, grace_s=bound, clock=self._clock)
        if app is not None:
            await stop_group(app, [], grace_s=self._termination_grace_s, clock=self._clock)
        if app is not None or qp is not None:
            self._note(pod, "stopped: " + ", ".join(
                f"{c.role} {describe_returncode(c.returncode)}" for c in (app, qp) if c is not None))
        pod.app = pod.qp = None
