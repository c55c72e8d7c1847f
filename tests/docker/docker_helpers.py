"""Helpers for the docker suite: `surge up --platform docker` as a process (the shared
`support.stack.Stack`), this stack's containers, a held app for the sidecar pair, and
manifests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from serving.platform.docker_engine import DockerEngine
from serving.platform.docker_pod import LABEL_PREFIX, load_stack_id
from support.stack import ROOT, Stack, config_autoscaler, free_port

__all__ = [
    "HELD_APP", "ROOT", "DockerStack", "config_autoscaler", "free_port", "service_yaml",
    "stack_containers", "wait_for",
]

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


class DockerStack(Stack):
    """One `surge up --platform docker` process with its state directory and port."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(
            state_dir, up_args=("--platform", "docker", "--queue-proxy-image", "surge-queue-proxy:dev"),
            start_timeout_s=START_TIMEOUT_S, stop_timeout_s=STOP_TIMEOUT_S, cli_timeout_s=CLI_TIMEOUT_S)
