"""The queue-proxy image against the issue's goals: size, start to first request, RSS.

    python bench/sidecar_image.py [--runs 5] [--load-s 10] [--clients 50]

Needs a Docker engine and `make images` (surge-queue-proxy:dev, surge-helloworld:dev).
What it measures, each printed as one line and written to bench/out/sidecar_image.json:

1. size: the queue-proxy image's size minus its base image's (what the sidecar adds;
   goal under 40 MB). The base is read from the Makefile's default, surge-base:bookworm,
   or --base.
2. start: `--runs` times, an app container (surge-helloworld:dev) is started first and
   left to become ready on its own; then the sidecar container joins its network
   namespace and is timed from just before the engine's start call until the first
   request proxied through it to the app answers 200 (polled every `--poll-ms`
   through the published serving port). The app is already up, so this is the
   sidecar's own start: the Python interpreter, imports, listeners, the first
   readiness probe of the app. Goal under 300 ms at the median. The pod as the
   platform starts it (sidecar first, then the app joining it) is timed the same way
   and printed beside it for context, as `pod start`.
3. RSS: `hey -c CLIENTS` for `--load-s` seconds through the sidecar; the sidecar
   process's VmRSS (from /proc, by the container's pid) sampled every 100 ms; the peak
   and the last sample are reported. Goal under 40 MB.

The bench runs on the host, where /proc shows the containers' processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataplane.types import RevisionKey  # noqa: E402
from serving.platform import PodTemplate  # noqa: E402
from serving.platform.docker_engine import DockerEngine, socket_path_from_env  # noqa: E402
from serving.platform.docker_pod import (  # noqa: E402
    HostPorts, app_container_spec, queue_proxy_container_spec,
)

QP_IMAGE, APP_IMAGE = "surge-queue-proxy:dev", "surge-helloworld:dev"
KEY = RevisionKey("default", "bench-00001")
LABELS = {"dev.surge.bench": "sidecar_image"}
TEMPLATE = PodTemplate(command=(), image=APP_IMAGE, env=MappingProxyType({"TARGET": "bench"}),
                       service="bench", configuration="bench")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def first_200(session: aiohttp.ClientSession, port: int, poll_s: float,
                    timeout_s: float = 30.0) -> float:
    """Poll GET / on 127.0.0.1:port until 200; the monotonic time of that answer."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    await resp.read()
                    if resp.status == 200:
                        return time.monotonic()
            except aiohttp.ClientError:
                pass  # not listening yet (or the engine's proxy has nothing behind it)
            await asyncio.sleep(poll_s)


def _sidecar_spec(ports: HostPorts, network: str | None) -> dict:
    spec = queue_proxy_container_spec(QP_IMAGE, TEMPLATE, KEY, "bench-00001-bench", ports,
                                      LABELS, drain_quiet_s=0.0)
    if network is not None:  # join the app's namespace: the app's container publishes
        spec["HostConfig"] = {"NetworkMode": f"container:{network}"}
        spec.pop("ExposedPorts")
    return spec


def _app_owner_spec(ports: HostPorts) -> dict:
    spec = app_container_spec(TEMPLATE, KEY, "unused", LABELS)
    # The app owns the namespace here, so it publishes the sidecar's ports, and its
    # own 8080 (at the "metrics" host port) to tell when it is up.
    published = {"8012/tcp": ports.serving, "9090/tcp": ports.stats, "8080/tcp": ports.metrics}
    spec["ExposedPorts"] = {p: {} for p in published}
    spec["HostConfig"] = {"NetworkMode": "bridge", "PortBindings": {
        p: [{"HostIp": "127.0.0.1", "HostPort": str(hp)}] for p, hp in published.items()}}
    return spec


async def sidecar_start(engine: DockerEngine, session: aiohttp.ClientSession,
                        poll_s: float) -> tuple[float, int, int]:
    """One run of measure 2: (seconds, sidecar pid, serving port); containers kept."""
    ports = HostPorts(free_port(), free_port(), free_port())
    app = await engine.create(f"surge-bench-app-{ports.serving}", _app_owner_spec(ports))
    started.append(app)
    await engine.start(app)
    await first_200(session, ports.metrics, poll_s)  # the app is up before the clock starts
    qp = await engine.create(f"surge-bench-qp-{ports.serving}", _sidecar_spec(ports, app))
    started.append(qp)
    t0 = time.monotonic()
    await engine.start(qp)
    t1 = await first_200(session, ports.serving, poll_s)
    pid = (await engine.inspect(qp))["State"]["Pid"]
    return t1 - t0, pid, ports.serving


async def pod_start(engine: DockerEngine, session: aiohttp.ClientSession, poll_s: float) -> float:
    """The pod as the platform starts it: sidecar, then app joining; start to first 200."""
    ports = HostPorts(free_port(), free_port(), free_port())
    t0 = time.monotonic()
    qp = await engine.create(f"surge-bench-pqp-{ports.serving}", _sidecar_spec(ports, None))
    started.append(qp)
    await engine.start(qp)
    app = await engine.create(f"surge-bench-papp-{ports.serving}",
                              app_container_spec(TEMPLATE, KEY, qp, LABELS))
    started.append(app)
    await engine.start(app)
    return await first_200(session, ports.serving, poll_s) - t0


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def rss_under_load(pid: int, port: int, load_s: float, clients: int) -> dict:
    """Peak and final VmRSS of `pid` while hey loads 127.0.0.1:port."""
    samples = [rss_kib(pid)]
    hey = await asyncio.create_subprocess_exec(
        shutil.which("hey") or "hey", "-z", f"{load_s}s", "-c", str(clients),
        f"http://127.0.0.1:{port}/", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        while hey.returncode is None:
            samples.append(rss_kib(pid))
            try:
                await asyncio.wait_for(hey.wait(), 0.1)
            except TimeoutError:
                pass
        out = (await hey.stdout.read()).decode()  # type: ignore[union-attr]
    finally:
        if hey.returncode is None:
            hey.kill()
            await hey.wait()
    rps = next((ln.split()[-1] for ln in out.splitlines() if "Requests/sec" in ln), "?")
    return {"idle_mib": samples[0] / 1024, "peak_mib": max(samples) / 1024,
            "last_mib": samples[-1] / 1024, "requests_per_s": rps, "clients": clients}


started: list[str] = []


async def main() -> int:
    """Run the three measures and print them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--load-s", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--poll-ms", type=float, default=2.0)
    ap.add_argument("--base", default="surge-base:bookworm")
    args = ap.parse_args()
    engine = DockerEngine(socket_path_from_env(os.environ))
    await engine.open()
    result: dict = {}
    try:
        qp, base = await engine.inspect_image(QP_IMAGE), await engine.inspect_image(args.base)
        added = (qp["Size"] - base["Size"]) / 1e6
        result["size"] = {"image_mb": qp["Size"] / 1e6, "base_mb": base["Size"] / 1e6,
                          "added_mb": added}
        print(f"size: {QP_IMAGE} adds {added:.1f} MB to {args.base} (goal < 40 MB)")
        async with aiohttp.ClientSession() as session:
            # Warm the engine and the page cache once; not counted.
            await pod_start(engine, session, args.poll_ms / 1000)
            starts, pods = [], []
            for _ in range(args.runs):
                seconds, pid, port = await sidecar_start(engine, session, args.poll_ms / 1000)
                starts.append(seconds)
                pods.append(await pod_start(engine, session, args.poll_ms / 1000))
            result["start"] = {"sidecar_s": starts, "pod_s": pods,
                               "sidecar_median_ms": statistics.median(starts) * 1000,
                               "pod_median_ms": statistics.median(pods) * 1000}
            print(f"start: sidecar container start -> first proxied 200: median "
                  f"{statistics.median(starts) * 1000:.0f} ms over {args.runs} runs "
                  f"(min {min(starts) * 1000:.0f}, max {max(starts) * 1000:.0f}; goal < 300 ms)")
            print(f"pod start: sidecar + app containers -> first 200: median "
                  f"{statistics.median(pods) * 1000:.0f} ms")
        load = await rss_under_load(pid, port, args.load_s, args.clients)
        result["rss"] = load
        print(f"rss: sidecar idle {load['idle_mib']:.1f} MiB, peak {load['peak_mib']:.1f} MiB "
              f"under hey -c {args.clients} for {args.load_s:g}s ({load['requests_per_s']} "
              f"req/s; goal < 40 MB)")
    finally:
        for cid in reversed(started):
            await engine.remove(cid)
        await engine.aclose()
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sidecar_image.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
