"""The Docker platform: each pod is a pair of containers, driven through the engine's API.

Theory of operation. A pod lives the lifecycle of supervisor.py (`PodSupervisor`: phases,
probing, back-off, the removal sequence), shared with the local platform; this module
is its runtime for containers:

    start        create + start the queue-proxy sidecar (it owns the pod's network
                 namespace; its ports published on 127.0.0.1 at fresh host ports), then
                 the user's container inside that namespace
    crash        either container stopped on its own (or could not start: a missing
                 image, a bad entrypoint): both are removed; the pod restarts after its
                 back-off with new containers and ports
    stop         SIGTERM to the sidecar (it fails health checks, waits its quiet period
                 and its requests in flight, then exits), then the user's container is
                 stopped (SIGTERM, SIGKILL after the grace period) and both are removed

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
from collections.abc import Awaitable
from pathlib import Path

from dataplane.clock import Clock
from dataplane.types import RevisionKey

from .base import PlatformError, PodTemplate
from .docker_engine import DockerEngine, append_logs, remove_now, socket_path_from_env
from .docker_pod import (
    HostPorts, PodState, app_container_spec, container_name, load_stack_id, pod_labels,
    queue_proxy_container_spec, stack_labels,
)
from .pod import RestartBackoff
from .supervisor import PodSupervisor, RevisionState

__all__ = ["DEFAULT_QUEUE_PROXY_IMAGE", "DockerPlatform"]

_log = logging.getLogger(__name__)

DEFAULT_QUEUE_PROXY_IMAGE = "surge-queue-proxy:dev"


class DockerPlatform(PodSupervisor[PodState]):
    """Runs revisions' pods as container pairs on a Docker engine (module docstring)."""

    runs_images = True  # the user's `image:` runs as written, command/args optional
    _platform_name = "Docker platform"
    _discard_words = "removing its containers"

    def __init__(self, engine: DockerEngine, state_dir: str | os.PathLike[str], clock: Clock, *,
                 stack_id: str, queue_proxy_image: str = DEFAULT_QUEUE_PROXY_IMAGE,
                 drain_quiet_s: float = 2.0, ready_poll_s: float = 0.05,
                 probe_period_s: float = 2.0, probe_timeout_s: float = 11.0,
                 restart_backoff: RestartBackoff = RestartBackoff(),
                 termination_grace_s: float = 10.0) -> None:
        super().__init__(Path(state_dir), clock, _log, drain_quiet_s=drain_quiet_s,
                         ready_poll_s=ready_poll_s, probe_period_s=probe_period_s,
                         probe_timeout_s=probe_timeout_s, restart_backoff=restart_backoff,
                         termination_grace_s=termination_grace_s)
        self._engine = engine
        self.stack_id = stack_id
        self._qp_image = queue_proxy_image

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
        mine = {cid for pod in self._all_pods() for cid in (pod.app_id, pod.qp_id) if cid}
        found = await self._engine.list(stack_labels(self.stack_id))
        # Users' containers first: each lives in its sidecar's network namespace.
        found.sort(key=lambda c: c.get("Labels", {}).get("dev.surge.role") != "app")
        left = [c["Id"] for c in found if c["Id"] not in mine]
        for cid in left:
            await self._engine.remove(cid)
        if left:
            _log.warning("removed %d container(s) a previous run of this stack left", len(left))
        return len(left)

    async def aclose(self) -> None:
        """Drain and remove every pod, then disconnect; if cancelled, remove them at once."""
        try:
            await super().aclose()
        finally:
            await self._engine.aclose()

    # -- the runtime's steps ------------------------------------------------------------

    def _rt_admit(self, key: RevisionKey, template: PodTemplate) -> None:
        if not template.image:
            raise PlatformError(f"{key}: the Docker platform runs the container's image, and "
                                f"spec.template.spec.containers[0].image is empty")

    def _rt_new_pod(self, rev: RevisionState[PodState], name: str) -> PodState:
        return PodState(name, rev.key, self._logs)

    def _rt_release(self, rev: RevisionState[PodState], pod: PodState) -> None:
        if pod.ports is not None:
            self._ports.release((pod.ports.serving, pod.ports.stats, pod.ports.metrics))
            pod.ports = None

    async def _rt_launch(self, rev: RevisionState[PodState], pod: PodState) -> str | None:
        template, key = rev.template, rev.key
        self._rt_release(rev, pod)  # fresh ports each start, in case ours were taken
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
            await self._remove_containers(pod)
            return f"could not start: {exc}"
        self._note(pod, f"started: containers {pod.app_id[:12]} ({template.image}) and "
                        f"{pod.qp_id[:12]} (queue-proxy on 127.0.0.1:{pod.ports.serving})")
        return None

    async def _pid(self, cid: str) -> int | None:
        state = (await self._engine.inspect(cid)).get("State", {})
        return int(state["Pid"]) if state.get("Running") and state.get("Pid") else None

    def _follow_logs(self, cid: str, path: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(
            append_logs(self._engine, cid, path), name=f"logs {cid[:12]}")

    def _rt_exits(self, pod: PodState) -> tuple[Awaitable[object], Awaitable[object]]:
        assert pod.app_id is not None and pod.qp_id is not None
        return self._engine.wait(pod.app_id), self._engine.wait(pod.qp_id)

    def _rt_exited(self, pod: PodState, app: asyncio.Future[object],
                   qp: asyncio.Future[object]) -> str:
        role, done = ("app", app) if app.done() and not app.cancelled() else ("queue-proxy", qp)
        if done.cancelled() or done.exception() is not None:
            return f"{role}: lost track of the container ({done.exception() or 'cancelled'})"
        return f"{role} exited with code {done.result()}"

    async def _rt_stop_crashed(self, pod: PodState, exited: object) -> str:
        await self._remove_containers(pod)
        return str(exited)

    def _rt_has_sidecar(self, pod: PodState) -> bool:
        return pod.qp_id is not None

    async def _rt_stop_sidecar(self, pod: PodState, bound_s: float) -> None:
        assert pod.qp_id is not None
        await self._engine.kill(pod.qp_id, "SIGTERM")
        try:
            async with asyncio.timeout(bound_s):
                code = await self._engine.wait(pod.qp_id)
        except TimeoutError:
            code = "killed after the drain bound"
        self._note(pod, f"queue-proxy exited with code {code}")

    async def _rt_stop_app(self, pod: PodState) -> None:
        if pod.app_id is not None:
            await self._engine.stop(pod.app_id, self._termination_grace_s)
            self._note(pod, "stopped: app container stopped")

    async def _rt_remove(self, pod: PodState) -> None:
        await self._remove_containers(pod)

    async def _rt_discard(self, pod: PodState, cancelled: bool) -> None:
        if cancelled:  # finish the removal even though this task is being cancelled
            await asyncio.shield(self._remove_containers(pod))
        else:
            await self._remove_containers(pod)

    def _rt_kill_now(self, pods: list[PodState]) -> None:
        ids = [cid for pod in pods for cid in (pod.app_id, pod.qp_id) if cid]
        if ids:
            remove_now(self._engine.socket_path, ids)

    async def _rt_closed(self) -> None:
        await self.remove_leftovers()

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
