"""What every platform (local processes, Docker, Kubernetes) offers the control plane.

The control plane builds one `PodTemplate` per revision (from the Revision's container),
`ensure`s it, then `scale`s it as the autoscaler decides. It learns about pods by
reading `pods(key)` and by subscribing to changes; before a pod is told to stop, the
platform awaits the control plane's removal hook, so the activator has stopped routing to
the pod by the time its queue-proxy starts draining (DESIGN.md, "Failure and bad input":
scale-down drains in-flight requests first).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from dataplane.types import PodAddress, RevisionKey

__all__ = [
    "ImageOnlyError",
    "Platform",
    "PlatformError",
    "PodInfo",
    "PodPhase",
    "PodRemovalHook",
    "PodTemplate",
    "PodsListener",
    "require_command",
]

# Knative's revision defaults (config-defaults): timeoutSeconds 300.
_DEFAULT_TIMEOUT_S = 300.0


class PlatformError(Exception):
    """A platform cannot do what was asked; the message says what and why."""


class ImageOnlyError(PlatformError, ValueError):
    """A container names an image but no command: the local platform has nothing to run."""

    def __init__(self, image: str | None, path: str = "spec.template.spec.containers[0]") -> None:
        self.image = image
        self.path = path
        what = f"image {image!r} alone" if image else "a container without a command"
        super().__init__(
            f"{path}: {what} cannot run locally (no container engine): add `command` (and "
            f"`args`) that start the program, e.g. command: [\"python\", \"app.py\"]; it "
            f"must listen on 127.0.0.1 or 0.0.0.0 at the port in $PORT"
        )


def require_command(command: Sequence[str], image: str | None = None,
                    path: str = "spec.template.spec.containers[0]") -> None:
    """Raise `ImageOnlyError` unless `command` names a program (for admission-time checks)."""
    if not command or not command[0]:
        raise ImageOnlyError(image, path)


class PodPhase(enum.Enum):
    """Where a pod is in its life (Kubernetes' phases, plus Terminating as kubectl shows it).

    PENDING: started, not yet ready once. RUNNING: became ready (`ready` may drop later
    if its probe fails). TERMINATING: being drained and stopped. FAILED: a process exited
    unexpectedly; the pod restarts after its back-off (Kubernetes' CrashLoopBackOff).
    """

    PENDING = "Pending"
    RUNNING = "Running"
    TERMINATING = "Terminating"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """How to run one revision's pods, built by the control plane from the Revision.

    `command` + `args` is the user program (the container's `command`/`args`; Kubernetes'
    `$(VAR)` references to `env`, PORT and K_* are expanded). `user_port` pins the port
    the app listens on; None (the normal case) gives each pod a free port in $PORT,
    because several pods of a revision share one host and a fixed port fits one pod only.
    `readiness_probe_json` is the container's readinessProbe as Kubernetes JSON; its port
    is pointed at the pod's user port. Durations are seconds.
    """

    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    working_dir: str | None = None
    image: str | None = None
    user_port: int | None = None
    container_concurrency: int = 0
    timeout_s: float = _DEFAULT_TIMEOUT_S
    response_start_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    readiness_probe_json: str | None = None
    service: str = ""
    configuration: str = ""


@dataclass(frozen=True, slots=True)
class PodInfo:
    """A snapshot of one pod, as `surge get pods` and the control plane see it.

    `address` is where the queue-proxy serves traffic (with its stats port for
    scraping). Ports and pids belong to the pod's current (or last) start: a restart
    after a crash picks fresh ports. Times are Clock seconds. `restarts` counts every
    restart after a crash (never reset, like Kubernetes' restartCount); `restart_at` and
    `backoff_s` say when a FAILED pod starts again and how long its back-off is.
    """

    name: str
    revision: RevisionKey
    phase: PodPhase
    ready: bool
    address: PodAddress
    admin_port: int
    metrics_port: int
    user_port: int
    app_pid: int | None
    queue_proxy_pid: int | None
    started_at: float | None
    restarts: int
    last_exit: str | None
    log_path: str
    queue_proxy_log_path: str
    ready_since: float | None = None
    restart_at: float | None = None
    backoff_s: float | None = None


# Awaited before a pod is stopped (its removal from routing); exceptions are logged.
PodRemovalHook = Callable[[PodInfo], Awaitable[None]]
# Called on every change to a revision's pods with all of its pods (an empty tuple
# once the last is gone); must not block.
PodsListener = Callable[[RevisionKey, tuple[PodInfo, ...]], None]


class Platform(Protocol):
    """Runs revisions' pods: the control plane's only way to start and stop them."""

    # True when a container's `image` alone is runnable (a container engine pulls or
    # has it); False when pods are local processes that need a `command`.
    runs_images: bool

    async def ensure(self, key: RevisionKey, template: PodTemplate) -> None:
        """Register (or update, for pods started later) how to run a revision's pods."""
        ...

    async def scale(self, key: RevisionKey, n: int) -> None:
        """Aim for `n` pods: start missing ones, begin draining extra ones; does not wait."""
        ...

    async def delete(self, key: RevisionKey) -> None:
        """Stop every pod of a revision (draining each) and forget it; waits until done."""
        ...

    def pods(self, key: RevisionKey) -> tuple[PodInfo, ...]:
        """Every pod of a revision, including terminating and failed ones."""
        ...

    def subscribe(self, listener: PodsListener) -> Callable[[], None]:
        """Call `listener` on every change to a revision's pods; returns the unsubscribe."""
        ...

    def set_pod_removal_hook(self, hook: PodRemovalHook | None) -> None:
        """Install the coroutine awaited before each pod is stopped."""
        ...

    async def wait_pods(self, key: RevisionKey,
                        predicate: Callable[[tuple[PodInfo, ...]], bool]) -> tuple[PodInfo, ...]:
        """Wait until `predicate(pods(key))` holds and return those pods."""
        ...

    async def aclose(self) -> None:
        """Stop every pod of every revision (gracefully; killed if cancelled)."""
        ...
