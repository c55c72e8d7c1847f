"""The Docker platform: each pod is a pair of containers, driven through the engine's API.

Theory of operation. A pod lives the local platform's life (serving/platform/local.py),
with containers where local pods have processes; one supervisor task per pod:

    PENDING      create + start the queue-proxy sidecar (it owns the pod's network
                 namespace; its ports published on 127.0.0.1 at fresh host ports), then
                 the user's container inside that namespace; probe the sidecar
                 (`K-Network-Probe: queue`) every `ready_poll_s`
    RUNNING      the first probe answered 200 `queue`. Probed every `probe_period_s`;
                 three failures in a row -> not ready, one pass -> ready
    FAILED       either container stopped on its own (or could not start: a missing
                 image, a bad entrypoint): both are removed, then the pod waits out its
                 back-off and starts again (same name, new containers and ports)
    TERMINATING  scale-down, delete or close: the removal hook (the activator stops
                 routing here), SIGTERM to the sidecar (it fails health checks, waits
                 its quiet period and its requests in flight, then exits), then the
                 user's container is stopped (SIGTERM, SIGKILL after the grace period)
                 and both are removed

Worked example (drain quiet 2 s): scale(key, 0) with one 3 s request in flight since
t=-1: the hook runs at t=0, SIGTERM reaches the sidecar at once; its quiet period and
the request both end at t=2, the sidecar exits; the app gets SIGTERM and exits at about
t=2.2; both containers are removed and the pod leaves `pods(key)`.

Every container carries the stack's labels (serving/platform/docker_pod.py). At start,
`open()` removes whatever a previous run of this stack left (a crash, a SIGKILL);
another stack's containers carry another id and are never touched. Images are never
pulled (no registry is reached from these machines): a missing one fails the pod with
a line saying so.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from dataplane.clock import Clock
from dataplane.types import RevisionKey

from .base import PlatformError, PodInfo, PodPhase, PodRemovalHook, PodsListener, PodTemplate
from .docker_engine import DockerEngine, append_logs, remove_now, socket_path_from_env
from .docker_pod import (
    HostPorts, PodState, RevisionState, app_container_spec, container_name, load_stack_id,
    pod_labels, queue_proxy_container_spec, stack_labels,
)
from .pod import RestartBackoff, choose_pods_to_remove, new_pod_name
from .ports import PortAllocator
from .probe import probe_queue_proxy

__all__ = ["DEFAULT_QUEUE_PROXY_IMAGE", "DockerPlatform"]

_log = logging.getLogger(__name__)

DEFAULT_QUEUE_PROXY_IMAGE = "surge-queue-proxy:dev"
_QUEUE_PROXY_EXIT_MARGIN_S = 10.0  # as local.py: beyond the sidecar's own drain bound
_NOT_READY_AFTER_FAILURES = 3
_HOOK_TIMEOUT_S = 10.0


class DockerPlatform:
    """Runs revisions' pods as container pairs on a Docker engine (module docstring)."""

    runs_images = True  # the user's `image:` runs as written, command/args optional

    def __init__(self, engine: DockerEngine, state_dir: str | os.PathLike[str], clock: Clock, *,
                 stack_id: str, queue_proxy_image: str = DEFAULT_QUEUE_PROXY_IMAGE,
                 drain_quiet_s: float = 2.0, ready_poll_s: float = 0.05,
                 probe_period_s: float = 2.0, probe_timeout_s: float = 11.0,
                 restart_backoff: RestartBackoff = RestartBackoff(),
                 termination_grace_s: float = 10.0) -> None:
        self._engine = engine
        self._state_dir = Path(state_dir)
        self._logs = self._state_dir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.stack_id = stack_id
        self._qp_image = queue_proxy_image
        self._drain_quiet_s = drain_quiet_s
        self._ready_poll_s = ready_poll_s
        self._probe_period_s = probe_period_s
        self._probe_timeout_s = probe_timeout_s
        self._backoff = restart_backoff
        self._termination_grace_s = termination_grace_s
        self._ports = PortAllocator()
        self._revisions: dict[RevisionKey, RevisionState] = {}
        self._listeners: list[PodsListener] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._hook: PodRemovalHook | None = None
        self._closed = False

    @classmethod
    async def open(cls, state_dir: str | os.PathLike[str], clock: Clock, *,
                   queue_proxy_image: str = DEFAULT_QUEUE_PROXY_IMAGE,
                   socket_path: str | None = None, **options: object) -> DockerPlatform:
        """Connect to the engine, check the sidecar image, remove this stack's leftovers."""
        engine = DockerEngine(socket_path or socket_path_from_env(os.environ))
        await engine.open()  # EngineUnavailableError: one line saying where and what to do
        try:
            if not await engine.has_image(queue_proxy_image):
                raise PlatformError(
                    f"the queue-proxy image {queue_proxy_image!r} is not on the Docker engine: "
                    f"build it with `make images` (or pass --queue-proxy-image)")
            stack_id = load_stack_id(Path(state_dir))
            platform = cls(engine, state_dir, clock, stack_id=stack_id,
                           queue_proxy_image=queue_proxy_image, **options)  # type: ignore[arg-type]
            await platform.remove_leftovers()
        except BaseException:
            await engine.aclose()
            raise
        return platform

    async def remove_leftovers(self) -> int:
        """Remove every container of this stack the platform does not run; how many."""
        mine = {cid for rev in self._revisions.values() for pod in rev.pods.values()
                for cid in (pod.app_id, pod.qp_id) if cid}
        found = await self._engine.list(stack_labels(self.stack_id))
        # Users' containers first: each lives in its sidecar's network namespace.
        found.sort(key=lambda c: c.get("Labels", {}).get("dev.surge.role") != "app")
        left = [c["Id"] for c in found if c["Id"] not in mine]
        for cid in left:
            await self._engine.remove(cid)
        if left:
            _log.warning("removed %d container(s) a previous run of this stack left", len(left))
        return len(left)

    # -- the Platform interface -------------------------------------------------------

    async def ensure(self, key: RevisionKey, template: PodTemplate) -> None:
        """Register a revision, or replace its template for pods started from now on."""
        self._check_open()
        if not template.image:
            raise PlatformError(f"{key}: the Docker platform runs the container's image, and "
                                f"spec.template.spec.containers[0].image is empty")
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
            raise PlatformError(f"revision {key} is unknown to the Docker platform (ensure it first)")
        active = [p for p in rev.pods.values() if not p.stop_requested.is_set()]
        if n > len(active):
            for _ in range(n - len(active)):
                self._add_pod(rev)
        elif n < len(active):
            for name in choose_pods_to_remove([p.info() for p in active], len(active) - n):
                self._request_stop(rev.pods[name])
        self._changed(rev)

    async def delete(self, key: RevisionKey) -> None:
        """Drain and remove every pod of a revision, then forget it."""
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
        """Install the coroutine awaited before each pod's sidecar gets SIGTERM."""
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
        """Drain and remove every pod, then disconnect; if cancelled, remove them at once."""
        self._closed = True
        tasks = []
        for rev in self._revisions.values():
            for pod in rev.pods.values():
                self._request_stop(pod)
            self._changed(rev)
            tasks.extend(rev.tasks.values())
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.remove_leftovers()
        except BaseException:
            self.kill_all()
            raise
        finally:
            await self._engine.aclose()

    def kill_all(self) -> None:
        """Remove every pod's containers now (no drain), with blocking calls: exit paths."""
        ids = [cid for rev in self._revisions.values() for pod in rev.pods.values()
               for cid in (pod.app_id, pod.qp_id) if cid]
        for rev in self._revisions.values():
            for task in rev.tasks.values():
                task.cancel()
        if ids:
            remove_now(self._engine.socket_path, ids)

    # -- bookkeeping --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PlatformError("the Docker platform is shut down")

    def _add_pod(self, rev: RevisionState) -> None:
        pod = PodState(new_pod_name(rev.key.name, rev.pods), rev.key, self._logs)
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
        # As local pods: platform events go into the pod's log beside the app's output.
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
                if await self._start(rev, pod):
                    code = await self._watch(rev, pod)
                    if code is None:
                        break  # asked to stop while running
                    await self._stop_crashed(rev, pod, code)
                if not pod.stop_requested.is_set():
                    await self._back_off(rev, pod)
            await self._drain(rev, pod)
        except asyncio.CancelledError:
            await asyncio.shield(self._remove_containers(pod))
            raise
        except Exception:  # a bug here must not leave containers behind unseen
            _log.exception("pod %s: supervisor failed; removing its containers", pod.name)
            await self._remove_containers(pod)
        finally:
            self._release_ports(pod)
            rev.pods.pop(pod.name, None)
            self._changed(rev)

    def _release_ports(self, pod: PodState) -> None:
        if pod.ports is not None:
            self._ports.release((pod.ports.serving, pod.ports.stats, pod.ports.metrics))
            pod.ports = None

    async def _start(self, rev: RevisionState, pod: PodState) -> bool:
        template, key = rev.template, rev.key
        if pod.started_at is not None:
            pod.restarts += 1
        self._release_ports(pod)  # fresh ports each start, in case ours were taken
        pod.phase, pod.ready, pod.ready_since = PodPhase.PENDING, False, None
        pod.restart_at = pod.backoff_s = None
        pod.started_at = self._clock.now()
        labels = lambda role: pod_labels(self.stack_id, self._state_dir, key, template,  # noqa: E731
                                         pod.name, role)
        try:
            pod.ports = HostPorts(*self._ports.allocate(3))
            if not await self._engine.has_image(template.image or ""):
                raise PlatformError(f"image {template.image!r} is not on the Docker engine (no "
                                    f"registry is reached: build or load it first)")
            pod.qp_id = await self._engine.create(
                container_name(self.stack_id, pod.name, "queue-proxy"),
                queue_proxy_container_spec(self._qp_image, template, key, pod.name, pod.ports,
                                           labels("queue-proxy"), drain_quiet_s=self._drain_quiet_s))
            await self._engine.start(pod.qp_id)
            pod.log_tasks.append(self._follow_logs(pod.qp_id, pod.qp_log_path))
            pod.app_id = await self._engine.create(
                container_name(self.stack_id, pod.name, "app"),
                app_container_spec(template, key, pod.qp_id, labels("app")))
            await self._engine.start(pod.app_id)
            pod.log_tasks.append(self._follow_logs(pod.app_id, pod.log_path))
            pod.qp_pid = await self._pid(pod.qp_id)
            pod.app_pid = await self._pid(pod.app_id)
        except PlatformError as exc:  # EngineError included: a bad image, a taken port
            self._crashes_once(pod, f"could not start: {exc}")
            await self._remove_containers(pod)
            return False
        self._note(pod, f"started: containers {pod.app_id[:12]} ({template.image}) and "
                        f"{pod.qp_id[:12]} (queue-proxy on 127.0.0.1:{pod.ports.serving})")
        self._changed(rev)
        return True

    async def _pid(self, cid: str) -> int | None:
        state = (await self._engine.inspect(cid)).get("State", {})
        return int(state["Pid"]) if state.get("Running") and state.get("Pid") else None

    def _follow_logs(self, cid: str, path: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(
            append_logs(self._engine, cid, path), name=f"logs {cid[:12]}")

    def _crashes_once(self, pod: PodState, reason: str) -> None:
        # Kubernetes treats a container that cannot start like one that crashed.
        ready_for = None if pod.ready_since is None else self._clock.now() - pod.ready_since
        pod.crashes_in_a_row = self._backoff.consecutive(pod.crashes_in_a_row, ready_for)
        pod.last_exit = reason

    async def _watch(self, rev: RevisionState, pod: PodState) -> str | None:
        """Until a container stops (its description) or a stop is requested (None)."""
        assert pod.app_id is not None and pod.qp_id is not None
        prober = asyncio.ensure_future(self._probe_loop(rev, pod))
        app = asyncio.ensure_future(self._engine.wait(pod.app_id))
        qp = asyncio.ensure_future(self._engine.wait(pod.qp_id))
        stop = asyncio.ensure_future(pod.stop_requested.wait())
        try:
            await asyncio.wait((app, qp, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (prober, app, qp, stop):
                fut.cancel()
            await asyncio.gather(prober, app, qp, stop, return_exceptions=True)
        if pod.stop_requested.is_set():
            return None
        role, done = ("app", app) if app.done() and not app.cancelled() else ("queue-proxy", qp)
        if done.cancelled() or done.exception() is not None:
            return f"{role}: lost track of the container ({done.exception() or 'cancelled'})"
        return f"{role} exited with code {done.result()}"

    async def _probe_loop(self, rev: RevisionState, pod: PodState) -> None:
        failures = 0
        assert pod.ports is not None
        while True:
            ok = await probe_queue_proxy("127.0.0.1", pod.ports.serving, self._probe_timeout_s)
            if pod.stop_requested.is_set():
                return  # a pod being removed never turns ready again
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

    async def _stop_crashed(self, rev: RevisionState, pod: PodState, reason: str) -> None:
        pod.ready = False
        if not pod.stop_requested.is_set():
            pod.phase = PodPhase.FAILED
        self._changed(rev)
        self._crashes_once(pod, reason)
        await self._remove_containers(pod)

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
        if pod.qp_id is not None:
            self._note(pod, "stopping: SIGTERM to the queue-proxy (drain)")
            bound = self._drain_quiet_s + rev.template.timeout_s + _QUEUE_PROXY_EXIT_MARGIN_S
            await self._engine.kill(pod.qp_id, "SIGTERM")
            try:
                async with asyncio.timeout(bound):
                    code = await self._engine.wait(pod.qp_id)
            except TimeoutError:
                code = "killed after the drain bound"
            self._note(pod, f"queue-proxy exited with code {code}")
        if pod.app_id is not None:
            await self._engine.stop(pod.app_id, self._termination_grace_s)
            self._note(pod, "stopped: app container stopped")
        await self._remove_containers(pod)

    async def _remove_containers(self, pod: PodState) -> None:
        # The user's container first: it lives in the sidecar's network namespace.
        for attr in ("app_id", "qp_id"):
            cid = getattr(pod, attr)
            if cid is None:
                continue
            try:
                await self._engine.remove(cid)
            except PlatformError as exc:
                _log.warning("pod %s: cannot remove container %s: %s", pod.name, cid[:12], exc)
            setattr(pod, attr, None)
        pod.app_pid = pod.qp_pid = None
        if pod.log_tasks:  # each stream ends when its container goes; bounded all the same
            await asyncio.wait(pod.log_tasks, timeout=2.0)
            for task in pod.log_tasks:
                task.cancel()
            pod.log_tasks.clear()
