"""One pod lifecycle for every runtime: the shared half of `LocalPlatform` and `DockerPlatform`.

Theory of operation. A runtime (process groups in local.py, container pairs in
docker.py) knows how to start a pod's app and queue-proxy, wait for either to exit,
stop the sidecar, stop the app and clean up. `PodSupervisor` knows everything else and
runs one supervisor task per pod through Kubernetes' phases:

    PENDING      the runtime starts the pod (fresh ports each start); the queue-proxy
                 is probed (`K-Network-Probe: queue`) every `ready_poll_s`
    RUNNING      the first probe answered 200 `queue`: ready. Probed every
                 `probe_period_s`; three failures in a row -> not ready, one pass -> ready
    FAILED       the app or the queue-proxy exited on its own, or could not start: the
                 runtime stops what is left, then the pod waits out its back-off
                 (`RestartBackoff`) and starts again (same name, new ports)
    TERMINATING  scale-down, delete or close: the removal hook (the activator stops
                 routing here), SIGTERM to the queue-proxy and a wait for its drain
                 (quiet period + revision timeout + a margin), the app is stopped, the
                 runtime cleans up and the pod leaves `pods(key)`

Invariants: only `scale`/`delete`/`aclose` set `stop_requested`, and a pod with it set
is TERMINATING and never turns ready again; every change reaches the listeners and
`wait_pods` waiters through `_changed`. Worked example (defaults, drain quiet 2 s):
scale(key, 0) at t=0 with one 3 s request in flight since t=-1: the hook runs at t=0,
SIGTERM reaches the queue-proxy at once; its quiet period and the request both end at
t=2, it exits; the app is stopped at about t=2.1 and the pod is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Generic

from dataplane import first_of
from dataplane.clock import Clock
from dataplane.types import RevisionKey

from .base import PlatformError, PodInfo, PodPhase, PodRemovalHook, PodsListener, PodTemplate
from .pod import RestartBackoff, choose_pods_to_remove, new_pod_name
from .ports import PortAllocator
from .probe import probe_queue_proxy
from .records import PodT, RevisionState

__all__ = ["PodSupervisor"]

# The queue-proxy bounds its own shutdown by quiet period + revision timeout + 5 s;
# this is that bound plus a little, after which it is killed.
_QUEUE_PROXY_EXIT_MARGIN_S = 10.0
_NOT_READY_AFTER_FAILURES = 3  # Kubernetes' default failureThreshold
_HOOK_TIMEOUT_S = 10.0


class PodSupervisor(Generic[PodT]):
    """The `Platform` interface and each pod's life; a runtime subclass supplies the `_rt_*` steps."""

    _platform_name = "platform"  # in messages: "the local platform", "the Docker platform"
    _discard_words = "stopping the pod"  # what a failed supervisor does to the pod's leftovers

    def __init__(self, state_dir: Path, clock: Clock, log: logging.Logger, *, drain_quiet_s: float,
                 ready_poll_s: float, probe_period_s: float, probe_timeout_s: float,
                 restart_backoff: RestartBackoff, termination_grace_s: float) -> None:
        self._state_dir = state_dir
        self._logs = state_dir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._log = log  # the runtime module's logger: log lines keep their origin
        self._drain_quiet_s = drain_quiet_s
        self._ready_poll_s = ready_poll_s
        self._probe_period_s = probe_period_s
        self._probe_timeout_s = probe_timeout_s
        self._backoff = restart_backoff
        self._termination_grace_s = termination_grace_s  # the app's, between SIGTERM and SIGKILL
        self._ports = PortAllocator()  # host ports for pods' starts (and reserved fixed ones)
        self._revisions: dict[RevisionKey, RevisionState[PodT]] = {}
        self._listeners: list[PodsListener] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._hook: PodRemovalHook | None = None
        self._closed = False
        self._starts = 0
        self._crashes = 0

    # -- the runtime's steps (overridden) ------------------------------------------------

    def _rt_admit(self, key: RevisionKey, template: PodTemplate) -> None:
        """Reject a template this runtime cannot run (PlatformError); reserve what it needs."""

    def _rt_new_pod(self, rev: RevisionState[PodT], name: str) -> PodT:
        """A new record for a pod of `rev` named `name` (not started yet)."""
        raise NotImplementedError

    def _rt_release(self, rev: RevisionState[PodT], pod: PodT) -> None:
        """Give back what the pod's last start held (ports); the pod is leaving."""

    async def _rt_launch(self, rev: RevisionState[PodT], pod: PodT) -> str | None:
        """Start the pod's processes; None when up, else why not (with nothing left running)."""
        raise NotImplementedError

    def _rt_exits(self, pod: PodT) -> tuple[Awaitable[object], Awaitable[object]]:
        """Awaitables that end when the app, resp. the queue-proxy, exits."""
        raise NotImplementedError

    def _rt_exited(self, pod: PodT, app: asyncio.Future[object], qp: asyncio.Future[object]) -> object:
        """Which process exited, once `app` or `qp` (from `_rt_exits`) is done: a runtime token."""
        raise NotImplementedError

    async def _rt_stop_crashed(self, pod: PodT, exited: object) -> str:
        """Stop whatever of the pod still runs after a crash; what exited and how."""
        raise NotImplementedError

    def _rt_has_sidecar(self, pod: PodT) -> bool:
        """True while the pod's queue-proxy runs (a pod that never started has none)."""
        raise NotImplementedError

    async def _rt_stop_sidecar(self, pod: PodT, bound_s: float) -> None:
        """SIGTERM the queue-proxy and wait for its drain, killing it after `bound_s`."""
        raise NotImplementedError

    async def _rt_stop_app(self, pod: PodT) -> None:
        """SIGTERM the app (if it runs), SIGKILL after `termination_grace_s`."""
        raise NotImplementedError

    async def _rt_remove(self, pod: PodT) -> None:
        """After a drain: clean up (and say so); the pod holds no processes afterwards."""
        raise NotImplementedError

    async def _rt_discard(self, pod: PodT, cancelled: bool) -> None:
        """Get rid of the pod's processes now: its supervisor was cancelled or failed."""
        raise NotImplementedError

    def _rt_kill_now(self, pods: list[PodT]) -> None:
        """Kill these pods' processes at once, synchronously (exit paths)."""
        raise NotImplementedError

    def _rt_scaling_up(self, rev: RevisionState[PodT], n: int) -> None:
        """A hook before pods are added to reach `n`."""

    async def _rt_closed(self) -> None:
        """A hook after every pod is gone in `aclose`."""

    # -- the Platform interface ----------------------------------------------------------

    async def ensure(self, key: RevisionKey, template: PodTemplate) -> None:
        """Register a revision, or replace its template for pods started from now on."""
        self._check_open()
        self._rt_admit(key, template)
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
            raise PlatformError(f"revision {key} is unknown to the {self._platform_name} (ensure it first)")
        active = [p for p in rev.pods.values() if not p.stop_requested.is_set()]
        if n > len(active):
            self._rt_scaling_up(rev, n)
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
            await self._rt_closed()
        except BaseException:
            self.kill_all()
            raise

    def kill_all(self) -> None:
        """Kill every pod's processes now (no drain); for emergencies and exit paths."""
        self._rt_kill_now([pod for rev in self._revisions.values() for pod in rev.pods.values()])
        for rev in self._revisions.values():
            for task in rev.tasks.values():
                task.cancel()

    # -- bookkeeping ---------------------------------------------------------------------

    def _all_pods(self) -> Iterable[PodT]:
        return (pod for rev in self._revisions.values() for pod in rev.pods.values())

    def _check_open(self) -> None:
        if self._closed:
            raise PlatformError(f"the {self._platform_name} is shut down")

    def _add_pod(self, rev: RevisionState[PodT]) -> None:
        pod = self._rt_new_pod(rev, new_pod_name(rev.key.name, rev.pods))
        rev.pods[pod.name] = pod
        task = asyncio.get_running_loop().create_task(self._supervise(rev, pod), name=f"pod {pod.name}")
        rev.tasks[pod.name] = task
        task.add_done_callback(lambda t: rev.tasks.pop(pod.name, None))

    def _request_stop(self, pod: PodT) -> None:
        pod.stop_requested.set()
        pod.phase, pod.ready, pod.restart_at = PodPhase.TERMINATING, False, None

    def _changed(self, rev: RevisionState[PodT]) -> None:
        pods = self.pods(rev.key)
        for listener in list(self._listeners):
            try:
                listener(rev.key, pods)
            except Exception:  # a listener's bug must not stop pods from being managed
                self._log.exception("pods listener %r failed for %s", listener, rev.key)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    def _note(self, pod: PodT, message: str) -> None:
        # Platform events go into the pod's log beside the app's own output, so
        # `surge logs` tells the whole story (start, crash, back-off, stop).
        self._log.info("pod %s: %s", pod.name, message)
        try:
            with open(pod.log_path, "a", encoding="utf-8") as log:
                log.write(f"surge: {message}\n")
        except OSError as exc:
            self._log.warning("pod %s: cannot write %s: %s", pod.name, pod.log_path, exc)

    # -- one pod's life ------------------------------------------------------------------

    async def _supervise(self, rev: RevisionState[PodT], pod: PodT) -> None:
        try:
            while not pod.stop_requested.is_set():
                if await self._start(rev, pod):
                    exited = await self._watch(rev, pod)
                    if exited is None:
                        break  # asked to stop while running
                    await self._stop_crashed(rev, pod, exited)
                if not pod.stop_requested.is_set():
                    await self._back_off(rev, pod)
            await self._drain(rev, pod)
        except asyncio.CancelledError:
            await self._rt_discard(pod, cancelled=True)
            raise
        except Exception:  # a bug here must not leave processes behind unseen
            self._log.exception("pod %s: supervisor failed; %s", pod.name, self._discard_words)
            await self._rt_discard(pod, cancelled=False)
        finally:
            self._rt_release(rev, pod)
            rev.pods.pop(pod.name, None)
            self._changed(rev)

    async def _start(self, rev: RevisionState[PodT], pod: PodT) -> bool:
        if pod.started_at is not None:
            pod.restarts += 1
        pod.phase, pod.ready, pod.ready_since = PodPhase.PENDING, False, None
        pod.restart_at = pod.backoff_s = None
        pod.started_at = self._clock.now()
        self._starts += 1
        failure = await self._rt_launch(rev, pod)
        if failure is not None:
            # Kubernetes treats a container that cannot start like one that crashed.
            self._crashes += 1
            pod.crashes_in_a_row = self._backoff.consecutive(pod.crashes_in_a_row, None)
            pod.last_exit = failure
            return False
        self._changed(rev)
        return True

    async def _watch(self, rev: RevisionState[PodT], pod: PodT) -> object | None:
        """Until a process exits (which, from `_rt_exited`) or a stop is requested (None)."""
        app, qp = (asyncio.ensure_future(w) for w in self._rt_exits(pod))
        try:
            # The probe loop returns only once a stop is requested, so it can race the others.
            await first_of(app, qp, pod.stop_requested.wait(), self._probe_loop(rev, pod))
        except Exception:
            if not (_has_failed(app) or _has_failed(qp)):
                raise
            # A wait that failed (the runtime lost track of a process) ends the watch like
            # an exit: `_rt_exited` reads the error from the future.
        if pod.stop_requested.is_set():
            return None
        return self._rt_exited(pod, app, qp)

    async def _probe_loop(self, rev: RevisionState[PodT], pod: PodT) -> None:
        failures = 0
        port = pod.endpoint()[0].port
        while True:
            ok = await probe_queue_proxy("127.0.0.1", port, self._probe_timeout_s)
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

    async def _stop_crashed(self, rev: RevisionState[PodT], pod: PodT, exited: object) -> None:
        ready_for = None if pod.ready_since is None else self._clock.now() - pod.ready_since
        pod.ready = False
        if not pod.stop_requested.is_set():
            pod.phase = PodPhase.FAILED
        self._changed(rev)
        # After the stop: a process's exit status is known once it is reaped.
        reason = await self._rt_stop_crashed(pod, exited)
        self._crashes += 1
        pod.crashes_in_a_row = self._backoff.consecutive(pod.crashes_in_a_row, ready_for)
        pod.last_exit = reason

    async def _back_off(self, rev: RevisionState[PodT], pod: PodT) -> None:
        delay = self._backoff.delay(max(pod.crashes_in_a_row, 1))
        pod.phase, pod.ready = PodPhase.FAILED, False
        pod.backoff_s, pod.restart_at = delay, self._clock.now() + delay
        self._note(pod, f"{pod.last_exit}; restarting in {delay:g}s")
        self._changed(rev)
        await first_of(self._clock.sleep(delay), pod.stop_requested.wait())

    async def _drain(self, rev: RevisionState[PodT], pod: PodT) -> None:
        pod.phase, pod.ready = PodPhase.TERMINATING, False
        self._changed(rev)
        if self._hook is not None:
            try:
                async with asyncio.timeout(_HOOK_TIMEOUT_S):
                    await self._hook(pod.info())
            except Exception:  # stopping must go on: the pod is leaving either way
                self._log.exception("pod %s: removal hook failed", pod.name)
        if self._rt_has_sidecar(pod):
            self._note(pod, "stopping: SIGTERM to the queue-proxy (drain)")
            bound = self._drain_quiet_s + rev.template.timeout_s + _QUEUE_PROXY_EXIT_MARGIN_S
            await self._rt_stop_sidecar(pod, bound)
        await self._rt_stop_app(pod)
        await self._rt_remove(pod)


def _has_failed(fut: asyncio.Future[object]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is not None
