"""The pure parts of a Docker pod: its stack's identity, labels, names, container specs.

A pod is two containers, as in Kubernetes: the queue-proxy sidecar, which owns the
pod's network namespace (the role of Kubernetes' pause container), and the user's
container, which joins it (`NetworkMode: container:<sidecar>`), so the sidecar reaches
the app on 127.0.0.1:$PORT. The sidecar owns the namespace because its ports are the
pod's address: they stay published for the pod's whole start even while the user's
image fails to run, and the sidecar image is ours, so what it exposes is known.

Addresses: the sidecar's serving (8012), stats (9090) and metrics (9091) ports are
published on 127.0.0.1 at host ports the stack picks, so the stack reaches a pod the
same way whether it runs on the host or in a container on the host's network (as
docker-compose.yml runs it); inside a pod the ports are Knative's fixed numbers.

Nothing here talks to the engine; `docker.py` is the shell that does (and, with the
shared lifecycle of supervisor.py, the only writer of the mutable `PodState` records).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplane.types import PodAddress, RevisionKey

from .base import PodTemplate
from .pod import PodPorts, expand_vars, queue_proxy_environment
from .records import PodRecord, RevisionState

__all__ = [
    "LABEL_PREFIX",
    "POD_PORTS",
    "HostPorts",
    "PodState",
    "RevisionState",
    "app_container_spec",
    "container_name",
    "load_stack_id",
    "pod_labels",
    "queue_proxy_container_spec",
    "stack_labels",
]

LABEL_PREFIX = "dev.surge."
# Inside a pod: Knative's queue-proxy ports and its default user port.
POD_PORTS = PodPorts(serving=8012, stats=9090, admin=8022, metrics=9091, user=8080)
_STACK_FILE = "docker-stack-id"
_STACK_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True)
class HostPorts:
    """The 127.0.0.1 ports one pod start publishes: sidecar serving, stats, metrics."""

    serving: int
    stats: int
    metrics: int


def load_stack_id(state_dir: Path) -> str:
    """The stack's id, made once and kept in the state directory.

    The id (not the directory's path) tells this stack's containers from another's:
    two compose projects both keep their state in /var/lib/surge inside their own
    container, yet their volumes, and so their ids, differ. A restart or a crash of
    the stack finds the same id again and cleans up what the last run left.
    """
    path = state_dir / _STACK_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    if _STACK_ID.match(text):
        return text
    new = secrets.token_hex(8)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new + "\n", encoding="ascii")
    tmp.replace(path)
    return new


def stack_labels(stack_id: str) -> dict[str, str]:
    """The label every container of the stack carries (the filter to find them)."""
    return {LABEL_PREFIX + "stack": stack_id}


def pod_labels(stack_id: str, state_dir: Path, key: RevisionKey, template: PodTemplate,
               pod_name: str, role: str) -> dict[str, str]:
    """Labels naming the stack (id and state directory), service, revision, pod, role."""
    labels = stack_labels(stack_id)
    labels.update({
        LABEL_PREFIX + "state-dir": str(state_dir),
        LABEL_PREFIX + "namespace": key.namespace,
        LABEL_PREFIX + "service": template.service,
        LABEL_PREFIX + "configuration": template.configuration,
        LABEL_PREFIX + "revision": key.name,
        LABEL_PREFIX + "pod": pod_name,
        LABEL_PREFIX + "role": role,
    })
    return labels


def container_name(stack_id: str, pod_name: str, role: str) -> str:
    """`surge-<first 6 of the stack id>-<pod>-<role>`: unique per engine, readable in `docker ps`."""
    return f"surge-{stack_id[:6]}-{pod_name}-{role}"


def _port_binding(host_port: int) -> list[dict[str, str]]:
    return [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]


def queue_proxy_container_spec(image: str, template: PodTemplate, key: RevisionKey,
                               pod_name: str, host: HostPorts, labels: Mapping[str, str], *,
                               drain_quiet_s: float) -> dict[str, Any]:
    """The sidecar's create body: Knative's ports inside, published on 127.0.0.1."""
    user_port = template.user_port or POD_PORTS.user
    ports = PodPorts(POD_PORTS.serving, POD_PORTS.stats, POD_PORTS.admin, POD_PORTS.metrics,
                     user_port)
    env = queue_proxy_environment({}, template, key, pod_name, ports,
                                  drain_quiet_s=drain_quiet_s)
    # The pod's IP is the engine's to give at start; "any" makes the sidecar listen on
    # every interface of the pod, as Knative's does with the pod IP. Admin stays on
    # the pod's loopback: only the sidecar's own SIGTERM handling drains it here.
    env["SERVING_POD_IP"] = "0.0.0.0"
    published = {f"{POD_PORTS.serving}/tcp": host.serving, f"{POD_PORTS.stats}/tcp": host.stats,
                 f"{POD_PORTS.metrics}/tcp": host.metrics}
    return {
        "Image": image,
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Labels": dict(labels),
        "ExposedPorts": {port: {} for port in published},
        "HostConfig": {
            "NetworkMode": "bridge",
            "PortBindings": {port: _port_binding(hp) for port, hp in published.items()},
        },
    }


def app_container_spec(template: PodTemplate, key: RevisionKey, sidecar_id: str,
                       labels: Mapping[str, str]) -> dict[str, Any]:
    """The user's container: its image, env, command and args, in the sidecar's network.

    Kubernetes' rules: `command` replaces the image's ENTRYPOINT (and drops its CMD),
    `args` replaces CMD; `$(VAR)` in either expands from the container's env. PORT and
    K_SERVICE/K_CONFIGURATION/K_REVISION are set as Knative sets them.
    """
    if not template.image:
        raise ValueError("the container has no image")
    env = dict(template.env)
    env.update(PORT=str(template.user_port or POD_PORTS.user), K_SERVICE=template.service,
               K_CONFIGURATION=template.configuration, K_REVISION=key.name)
    spec: dict[str, Any] = {
        "Image": template.image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": dict(labels),
        "HostConfig": {"NetworkMode": f"container:{sidecar_id}"},
    }
    if template.command:
        spec["Entrypoint"] = [expand_vars(part, env) for part in template.command]
    if template.args:
        spec["Cmd"] = [expand_vars(part, env) for part in template.args]
    if template.working_dir:
        spec["WorkingDir"] = template.working_dir
    return spec


class PodState(PodRecord):
    """One Docker pod's mutable state: its host ports, containers and log followers."""

    def __init__(self, name: str, key: RevisionKey, logs: Path) -> None:
        super().__init__(name, key, logs)
        self.ports: HostPorts | None = None
        self.app_id: str | None = None
        self.qp_id: str | None = None
        self.app_pid: int | None = None
        self.qp_pid: int | None = None
        self.log_tasks: list[asyncio.Task[None]] = []

    def endpoint(self) -> tuple[PodAddress, int, int, int]:
        """The sidecar's published address (host ports 0 until the first start picks them)."""
        p = self.ports or HostPorts(0, 0, 0)
        return PodAddress("127.0.0.1", p.serving, p.stats), POD_PORTS.admin, p.metrics, POD_PORTS.user

    def pids(self) -> tuple[int | None, int | None]:
        """The containers' main pids as the engine last reported them."""
        return self.app_pid, self.qp_pid
