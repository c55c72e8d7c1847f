"""What `./scripts/up` runs: the hello-world app behind a real queue-proxy, on this machine.

    python -m queue_proxy.demo [--port 8012] [--container-concurrency 10] [--target Surge]

Starts two children, each in its own process group and bound to die with us (Linux
PR_SET_PDEATHSIG, so even a SIGKILL of the demo leaves no orphan): the example app on
`PORT` and a `python -m queue_proxy` in front of it. Ports are Knative's defaults when
free (8012 serving, 8080 app, 8022 admin, 9090 stats, 9091 metrics), otherwise free
ones. Once the queue-proxy answers its own readiness probe (`K-Network-Probe: queue`)
it prints where to curl. Ctrl-C or SIGTERM stops the queue-proxy first (it drains, as a
pod's preStop hook makes the app wait for), then the app; if either child dies the
other is stopped and the demo exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from dataplane import first_of

_APP = Path(__file__).resolve().parent.parent / "examples" / "helloworld" / "app.py"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0
_PROBE_INTERVAL_S = 0.1
_HOST = "127.0.0.1"


def _pick_ports(wanted: dict[str, int]) -> dict[str, int]:
    """Each wanted port if nothing listens there, else a free one; all distinct."""
    held: list[socket.socket] = []
    chosen: dict[str, int] = {}
    try:
        for name, port in wanted.items():
            sock = socket.socket()
            held.append(sock)  # held open until all are picked, so none repeats
            try:
                # 0.0.0.0 also collides with a listener on 127.0.0.1 (the app binds all).
                sock.bind(("0.0.0.0", port))
            except OSError:
                sock.bind(("0.0.0.0", 0))
            chosen[name] = sock.getsockname()[1]
    finally:
        for sock in held:
            sock.close()
    return chosen


def _child_setup(parent_pid: int) -> None:
    """Runs in the child before exec: own process group, die with the demo."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the demo died before prctl took effect
            os._exit(1)


async def _spawn(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    parent = os.getpid()
    return await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, preexec_fn=lambda: _child_setup(parent),
    )


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it exited since the check
            os.killpg(proc.pid, sig)


async def _stop(proc: asyncio.subprocess.Process, name: str) -> None:
    """SIGTERM, wait, then SIGKILL its whole group if it lingers."""
    _signal_group(proc, signal.SIGTERM)
    try:
        async with asyncio.timeout(_STOP_TIMEOUT_S):
            await proc.wait()
    except TimeoutError:
        print(f"demo: {name} did not stop in {_STOP_TIMEOUT_S:g}s; killing it", file=sys.stderr)
        _signal_group(proc, signal.SIGKILL)
        await proc.wait()


async def _wait_ready(url: str, children: list[asyncio.subprocess.Process]) -> bool:
    """Probe the queue-proxy as the kubelet does until 200; False if a child exits or time runs out."""
    headers = {"K-Network-Probe": "queue", "User-Agent": "kube-probe/1.31"}
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S), aiohttp.ClientSession() as http:
            while all(c.returncode is None for c in children):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url, headers=headers) as resp:
                        if resp.status == 200:
                            return True
                await asyncio.sleep(_PROBE_INTERVAL_S)  # the listener is not up yet: poll
    except TimeoutError:
        return False
    return False  # a child exited


def _queue_proxy_env(args: argparse.Namespace, ports: dict[str, int]) -> dict[str, str]:
    return {
        "CONTAINER_CONCURRENCY": str(args.container_concurrency),
        "QUEUE_SERVING_PORT": str(ports["serving"]), "USER_PORT": str(ports["user"]),
        "QUEUE_ADMIN_PORT": str(ports["admin"]), "QUEUE_STATS_PORT": str(ports["stats"]),
        "QUEUE_METRICS_PORT": str(ports["metrics"]),
        "REVISION_TIMEOUT_SECONDS": str(args.timeout_seconds),
        "QUEUE_DRAIN_QUIET_SECONDS": str(args.drain_quiet_seconds),
        "SERVING_NAMESPACE": "default", "SERVING_SERVICE": "helloworld",
        "SERVING_CONFIGURATION": "helloworld", "SERVING_REVISION": "helloworld-00001",
        "SERVING_POD": "helloworld-00001-deployment-local",
    }


async def run(args: argparse.Namespace) -> int:
    """Start both children, print the URLs, and supervise until a signal or a death."""
    ports = _pick_ports({"serving": args.port, "user": args.user_port, "admin": 8022,
                         "stats": 9090, "metrics": 9091})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[tuple[str, asyncio.subprocess.Process]] = []
    try:
        app = await _spawn([sys.executable, str(_APP)], {"PORT": str(ports["user"]), "TARGET": args.target})
        children.append(("app", app))
        qp = await _spawn([sys.executable, "-m", "queue_proxy"], _queue_proxy_env(args, ports))
        children.append(("queue-proxy", qp))
        base = f"http://{_HOST}:{ports['serving']}/"
        ready = asyncio.ensure_future(_wait_ready(base, [app, qp]))
        await first_of(ready, stop.wait())
        if not ready.cancelled() and ready.result():  # cancelled: the stop came first
            print(f"\nhelloworld is up behind a queue-proxy (containerConcurrency "
                  f"{args.container_concurrency}):\n"
                  f"  curl {base}\n"
                  f"  stats (JSON; Accept: application/protobuf for the wire format): "
                  f"curl http://{_HOST}:{ports['stats']}/metrics\n"
                  f"  Prometheus metrics: curl http://{_HOST}:{ports['metrics']}/metrics\n"
                  f"Ctrl-C stops both.\n", flush=True)
            await first_of(app.wait(), qp.wait(), stop.wait())
        elif not stop.is_set():
            print("demo: the queue-proxy did not become ready", file=sys.stderr)
        # A second Ctrl-C while stopping shortens the queue-proxy's drain.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _signal_group, qp, signal.SIGTERM)
        died = [(name, proc) for name, proc in children if proc.returncode is not None]
        await _stop(qp, "queue-proxy")  # first, so in-flight requests still reach the app
        await _stop(app, "app")
        for name, proc in died:
            print(f"demo: {name} exited with status {proc.returncode}", file=sys.stderr)
        return 0 if stop.is_set() and not died else 1
    finally:
        for _, proc in children:  # whatever happened above, leave nothing behind
            _signal_group(proc, signal.SIGKILL)
            await proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the demo until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m queue_proxy.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8012, help="queue-proxy serving port (default 8012)")
    parser.add_argument("--user-port", type=int, default=8080, help="app port (default 8080)")
    parser.add_argument("--container-concurrency", type=int, default=10)
    parser.add_argument("--timeout-seconds", type=int, default=300, help="revision timeout")
    parser.add_argument("--drain-quiet-seconds", type=float, default=1.0,
                        help="drain quiet period on Ctrl-C (Knative's is 30)")
    parser.add_argument("--target", default="Surge", help="who the app greets")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
