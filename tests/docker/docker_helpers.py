"""Helpers for the docker suite: `surge up --platform docker` as a process, this stack's
containers, a held app for the sidecar pair, and manifests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from serving.platform.docker_engine import DockerEngine
from serving.platform.docker_pod import LABEL_PREFIX, load_stack_id

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 60.0
# Held requests: `/` waits until `/release` on the control port (8081) is called; the
# control port also reports the app's in-flight count and its peak.
HELD_APP = """
import asyncio, os
from aiohttp import web
state = {"in_flight": 0, "peak": 0, "release": None}
async def held(request):
    state["in_flight"] += 1
    state["peak"] = max(state["peak"], state["in_flight"])
    try:
        await state["release"].wait()
    finally:
        state["in_flight"] -= 1
    return web.Response(text="done")
async def release(request):
    state["release"].set()
    return web.Response(text="released")
async def report(request):
    return web.json_response({k: state[k] for k in ("in_flight", "peak")})
async def main():
    state["release"] = asyncio.Event()
    app = web.Application(); app.router.add_get("/", held)
    control = web.Application()
    control.router.add_get("/release", release); control.router.add_get("/state", report)
    for application, port in ((app, int(os.environ["PORT"])), (control, 8081)):
        runner = web.AppRunner(application); await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_yaml(name: str, *, annotations: dict[str, str] | None = None) -> str:
    """A Service on the hello-world image."""
    anns = "".join(f"        {k}: {json.dumps(v)}\n" for k, v in (annotations or {}).items())
    meta = f"    metadata:\n      annotations:\n{anns}" if anns else ""
    return (
        "apiVersion: serving.knative.dev/v1\nkind: Service\n"
        f"metadata:\n  name: {name}\n  namespace: default\n"
        "spec:\n  template:\n" + meta + "    spec:\n      containers:\n"
        "        - image: surge-helloworld:dev\n"
        '          command: ["/opt/venv/bin/python", "/app/app.py"]\n'
        "          env:\n            - name: TARGET\n              value: docker\n"
    )


def config_autoscaler(**data: str) -> str:
    """A config-autoscaler ConfigMap (keys with _ spelled as -)."""
    lines = "".join(f"  {k.replace('_', '-')}: {json.dumps(v)}\n" for k, v in data.items())
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\n"
            "  namespace: knative-serving\ndata:\n" + lines)


async def stack_containers(engine: DockerEngine, state_dir: Path) -> list[dict]:
    """The containers carrying the stack id kept in `state_dir`."""
    return await engine.list({LABEL_PREFIX + "stack": load_stack_id(state_dir)})


async def wait_for(probe: Callable[[], object], timeout_s: float, period_s: float = 0.2):
    """Poll `await probe()` until it returns something truthy (across processes there is
    no event to wait on); bounded by `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not (result := await probe()):
            await asyncio.sleep(period_s)
    return result


class DockerStack:
    """One `surge up --platform docker` process with its state directory and port."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._line = asyncio.Event()
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    async def start(self) -> None:
        """Start the stack and wait for its ready line."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "serving.cli", "up", "--platform", "docker",
            "--queue-proxy-image", "surge-queue-proxy:dev", "--port", str(self.port),
            "--state-dir", str(self.state_dir), cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read(self.proc))
        await self.wait_line(lambda line: line.startswith("surge: ready"), START_TIMEOUT_S)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._line.set()
        self._line.set()

    async def wait_line(self, match: Callable[[str], bool], timeout_s: float) -> str:
        """The first output line for which `match` holds."""
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines:
                    if match(line):
                        return line
                if self._reader is not None and self._reader.done():
                    raise AssertionError("surge up exited:\n" + "\n".join(self.lines))
                self._line.clear()
                await self._line.wait()

    async def surge(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        """Run `surge ARGS --state-dir DIR`; (status, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "serving.cli", *args, "--state-dir", str(self.state_dir),
            cwd=ROOT, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(CLI_TIMEOUT_S):
                out, err = await proc.communicate(stdin.encode() if stdin else None)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode(), err.decode()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the stack by PID and wait for it to exit; its exit status."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.returncode is None:
            proc.send_signal(sig)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                rc = await proc.wait()
        except TimeoutError:
            proc.kill()
            rc = await proc.wait()
        if self._reader is not None:
            await self._reader
        return rc
