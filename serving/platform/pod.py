"""The pure parts of a local pod: names, environments, restart back-off, who to remove.

Nothing here starts a process or reads a clock; `local.py` is the shell that does.
"""

from __future__ import annotations

import json
import math
import secrets
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataplane.types import RevisionKey

from .base import PodInfo, PodPhase, PodTemplate, require_command

__all__ = [
    "PYTHON_NAMES",
    "PodPorts",
    "RestartBackoff",
    "app_command",
    "app_environment",
    "choose_pods_to_remove",
    "expand_vars",
    "localize_probe",
    "new_pod_name",
    "queue_proxy_environment",
]

_NAME_ALPHABET = string.ascii_lowercase + string.digits
# Variables the queue-proxy reads (queue_proxy/config.py): never inherited from the
# environment of `surge up`, so a stray one in the user's shell cannot change a pod.
_QUEUE_PROXY_VARS = (
    "CONTAINER_CONCURRENCY", "QUEUE_SERVING_PORT", "QUEUE_SERVING_TLS_PORT", "USER_PORT",
    "REVISION_TIMEOUT_SECONDS", "REVISION_RESPONSE_START_TIMEOUT_SECONDS",
    "REVISION_IDLE_TIMEOUT_SECONDS", "SERVING_NAMESPACE", "SERVING_SERVICE",
    "SERVING_CONFIGURATION", "SERVING_REVISION", "SERVING_POD", "SERVING_POD_IP",
    "SERVING_READINESS_PROBE", "SERVING_LOGGING_CONFIG", "SERVING_LOGGING_LEVEL",
    "ENABLE_HTTP_FULL_DUPLEX", "ENABLE_HTTP2_AUTO_DETECTION", "ENABLE_MULTI_CONTAINER_PROBES",
    "OBSERVABILITY_CONFIG", "QUEUE_ADMIN_PORT", "QUEUE_STATS_PORT", "QUEUE_METRICS_PORT",
    "QUEUE_DRAIN_QUIET_SECONDS", "QUEUE_ADMIN_ADDRESS",
)


@dataclass(frozen=True, slots=True)
class PodPorts:
    """The loopback ports of one pod start: the queue-proxy's four and the app's."""

    serving: int
    stats: int
    admin: int
    metrics: int
    user: int


def new_pod_name(revision: str, taken: Collection[str]) -> str:
    """`<revision>-<5 random lowercase alphanumerics>`, as Kubernetes names a pod."""
    while True:
        name = f"{revision}-{''.join(secrets.choice(_NAME_ALPHABET) for _ in range(5))}"
        if name not in taken:
            return name


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command and args.

    `$(NAME)` becomes the value of NAME when defined and stays as written otherwise;
    `$$` is one literal `$` (so `$$(PORT)` stays `$(PORT)`). Example with PORT=8080:
    `--port=$(PORT) $(NOPE) $$(PORT)` -> `--port=8080 $(NOPE) $(PORT)`.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _declared_env(template: PodTemplate, key: RevisionKey, user_port: int) -> dict[str, str]:
    # What Knative puts in the container's env: the user's, then its own reserved names
    # (users may not set PORT or K_*, reference 4.1, so ours win).
    env = dict(template.env)
    env.update(PORT=str(user_port), K_SERVICE=template.service,
               K_CONFIGURATION=template.configuration, K_REVISION=key.name)
    return env


# A command of one of these bare names runs with Surge's own interpreter (see app_command).
PYTHON_NAMES = frozenset({"python", "python3"})


def app_command(template: PodTemplate, key: RevisionKey, user_port: int,
                python: str | None = None) -> list[str]:
    """The user program's argv: command + args with `$(VAR)` expanded; ImageOnlyError if none.

    With `python` (the interpreter running Surge), a command of bare `python` or
    `python3` runs with it: a manifest written for a container image says `python`,
    and on this host that name may be missing from PATH (Debian ships only python3) or
    be an interpreter without the packages the example apps need (aiohttp), which
    Surge's own environment has. Write a path (`/usr/bin/python3`) to run another one.
    """
    require_command(template.command, template.image)
    env = _declared_env(template, key, user_port)
    argv = [expand_vars(part, env) for part in (*template.command, *template.args)]
    if python is not None and argv[0] in PYTHON_NAMES:
        argv[0] = python
    return argv


def app_environment(base: Mapping[str, str], template: PodTemplate, key: RevisionKey,
                    user_port: int) -> dict[str, str]:
    """The user program's environment.

    A local program needs the host's PATH, HOME and so on, so it starts from `base`
    (the environment of `surge up`). PYTHONUNBUFFERED=1 (unless the container sets it)
    makes a Python app's output reach its log file line by line, as a container
    runtime's pipe would. The container's env and Knative's reserved names follow.
    """
    env = {k: v for k, v in base.items() if k not in _QUEUE_PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(_declared_env(template, key, user_port))
    return env


def localize_probe(probe_json: str | None, user_port: int) -> str | None:
    """Point the readiness probe's tcpSocket/httpGet port at the pod's user port.

    Knative allows a probe only on the container's one port; locally that port is the
    pod's $PORT, whatever number the manifest wrote. Text that is not a probe object
    (or a list of them) is passed on unchanged for the queue-proxy to reject.
    """
    if probe_json is None:
        return None
    try:
        doc: Any = json.loads(probe_json)
    except ValueError:
        return probe_json
    for probe in doc if isinstance(doc, list) else [doc]:
        if not isinstance(probe, dict):
            continue
        for kind in ("tcpSocket", "httpGet"):
            if isinstance(probe.get(kind), dict):
                probe[kind]["port"] = user_port
    return json.dumps(doc, separators=(",", ":"))


def _whole_seconds(seconds: float) -> str:
    # The queue-proxy reads whole seconds, as Knative's does; round up so a limit is
    # never shorter than asked.
    return str(math.ceil(seconds))


def queue_proxy_environment(base: Mapping[str, str], template: PodTemplate, key: RevisionKey,
                            pod_name: str, ports: PodPorts, *, drain_quiet_s: float,
                            pythonpath: str | None = None) -> dict[str, str]:
    """The queue-proxy's environment (the names of queue_proxy/config.py)."""
    env = {k: v for k, v in base.items() if k not in _QUEUE_PROXY_VARS}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else "")
    env.update(
        CONTAINER_CONCURRENCY=str(template.container_concurrency),
        QUEUE_SERVING_PORT=str(ports.serving),
        USER_PORT=str(ports.user),
        REVISION_TIMEOUT_SECONDS=_whole_seconds(template.timeout_s),
        SERVING_NAMESPACE=key.namespace,
        SERVING_SERVICE=template.service,
        SERVING_CONFIGURATION=template.configuration or key.name,
        SERVING_REVISION=key.name,
        SERVING_POD=pod_name,
        SERVING_POD_IP="127.0.0.1",
        QUEUE_ADMIN_PORT=str(ports.admin),
        QUEUE_ADMIN_ADDRESS="127.0.0.1",
        QUEUE_STATS_PORT=str(ports.stats),
        QUEUE_METRICS_PORT=str(ports.metrics),
        QUEUE_DRAIN_QUIET_SECONDS=f"{drain_quiet_s:g}",
    )
    if template.response_start_timeout_s:
        env["REVISION_RESPONSE_START_TIMEOUT_SECONDS"] = _whole_seconds(template.response_start_timeout_s)
    if template.idle_timeout_s:
        env["REVISION_IDLE_TIMEOUT_SECONDS"] = _whole_seconds(template.idle_timeout_s)
    probe = localize_probe(template.readiness_probe_json, ports.user)
    if probe is not None:
        env["SERVING_READINESS_PROBE"] = probe
    return env


@dataclass(frozen=True, slots=True)
class RestartBackoff:
    """Crash-loop back-off: `initial_s` doubling to `cap_s`; reset after `reset_after_s` ready.

    The kubelet's CrashLoopBackOff doubles from 10 s to 300 s and forgets the crashes
    once a container has run for twice the cap. Local programs start in well under a
    second, so Surge starts at 1 s and caps at 30 s; the reset rule is the kubelet's.
    Worked example (defaults): crashes at once, over and over: waits 1, 2, 4, 8, 16, 30,
    30 s. Ready for 60 s or more before the next crash: waits 1 s again.
    """

    initial_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float | None = None  # None: twice cap_s

    def delay(self, consecutive_crashes: int) -> float:
        """The wait before restarting after the n-th crash in a row (n >= 1)."""
        exponent = max(consecutive_crashes - 1, 0)
        if exponent > 62:  # 2**63 seconds is past any cap
            return self.cap_s
        return min(self.cap_s, self.initial_s * (2 ** exponent))

    def consecutive(self, previous: int, ready_for_s: float | None) -> int:
        """The crash count in a row after one more crash, given how long the pod was ready."""
        reset_after = self.cap_s * 2 if self.reset_after_s is None else self.reset_after_s
        if ready_for_s is not None and ready_for_s >= reset_after:
            return 1
        return previous + 1


_PHASE_RANK = {PodPhase.FAILED: 0, PodPhase.PENDING: 1, PodPhase.RUNNING: 2, PodPhase.TERMINATING: 3}


def choose_pods_to_remove(pods: Sequence[PodInfo], count: int) -> list[str]:
    """The names of the `count` pods to stop first when scaling down.

    The ReplicaSet controller's order (Kubernetes `ActivePodsWithRanks`): not ready
    before ready; failed before pending before running; more restarts first; then the
    newest first. Losing a pod that never served costs nothing, and the oldest ready
    pods are the ones the load balancer and the autoscaler's history know best.
    Example: [a ready since 10, b ready since 50, c pending] minus 2 -> [c, b].
    """
    def rank(pod: PodInfo) -> tuple:
        newest_first = -(pod.ready_since if pod.ready_since is not None else pod.started_at or 0.0)
        return (pod.ready, _PHASE_RANK[pod.phase], -pod.restarts, newest_first, pod.name)

    return [pod.name for pod in sorted(pods, key=rank)[:max(count, 0)]]
