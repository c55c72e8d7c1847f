"""Helpers for the end-to-end tests: a real `surge up` subprocess, the CLI, and load.

`Stack` starts `python -m serving.cli up` on a free port with its own state directory,
reads its output in the background (so a test can wait for a line instead of sleeping),
runs `surge` commands against it as subprocesses, and stops it by PID. Frequent polling
(pod counts while load runs) goes to the admin API directly, so the machine's two cores
serve the load rather than a CLI start-up per sample.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
APP = str(Path(__file__).with_name("e2e_app.py"))
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 90.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_yaml(name: str, *, target: str = "v1", annotations: dict[str, str] | None = None,
                 container_concurrency: int | None = None, revision_name: str = "",
                 traffic: str = "", extra_container: str = "") -> str:
    """A Service running the e2e app (absolute interpreter path: no PATH lookup)."""
    meta = ""
    if annotations or revision_name:
        meta = "    metadata:\n"
        if revision_name:
            meta += f"      name: {revision_name}\n"
        if annotations:
            meta += "      annotations:\n" + "".join(
                f"        {k}: {json.dumps(v)}\n" for k, v in annotations.items())
    cc = "" if container_concurrency is None else \
        f"      containerConcurrency: {container_concurrency}\n"
    return (
        "apiVersion: serving.knative.dev/v1\nkind: Service\n"
        f"metadata:\n  name: {name}\n  namespace: default\n"
        "spec:\n  template:\n" + meta + "    spec:\n" + cc +
        "      containers:\n"
        f"        - command: [{json.dumps(sys.executable)}, {json.dumps(APP)}]\n"
        "          env:\n"
        f"            - name: TARGET\n              value: {json.dumps(target)}\n"
        + extra_container + (textwrap.indent(traffic, "  ") if traffic else "")
    )


def config_autoscaler(**data: str) -> str:
    """A config-autoscaler ConfigMap with `data` (keys with _ spelled as -)."""
    lines = "".join(f"  {k.replace('_', '-')}: {json.dumps(v)}\n" for k, v in data.items())
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\n"
            "  namespace: knative-serving\ndata:\n" + lines)


@dataclass(frozen=True)
class CliResult:
    """A finished `surge` command."""

    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Stack:
    """One `surge up` process with its state directory and ingress port."""

    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._line_added = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    async def start(self) -> None:
        """Start `surge up` and wait for it to say it is ready."""
        self.lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "serving.cli", "up", "--port", str(self.port),
            "--state-dir", str(self.state_dir), cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read(self.proc))
        await self.wait_line(lambda line: line.startswith("surge: ready"), START_TIMEOUT_S)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._line_added.set()
        self._line_added.set()

    async def wait_line(self, match: Callable[[str], bool], timeout_s: float,
                        start: int = 0) -> str:
        """The first output line from index `start` on for which `match` holds."""
        async with asyncio.timeout(timeout_s):
            seen = start
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                seen = len(self.lines)
                if self._reader is not None and self._reader.done():
                    raise AssertionError("surge up exited:\n" + "\n".join(self.lines))
                self._line_added.clear()
                await self._line_added.wait()

    async def surge(self, *args: str, stdin: str | None = None) -> CliResult:
        """Run `surge ARGS --state-dir DIR` as a subprocess."""
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
        return CliResult(proc.returncode or 0, out.decode(), err.decode())

    async def apply(self, text: str, *, ok: bool = True) -> CliResult:
        """`surge apply -f -` with `text`; asserts success unless `ok` is False."""
        result = await self.surge("apply", "-f", "-", stdin=text)
        if ok:
            assert result.rc == 0, result.err
        return result

    async def admin(self, session: aiohttp.ClientSession, path: str) -> Any:
        """GET the admin API directly (for polling under load)."""
        info = json.loads((self.state_dir / "admin.json").read_text())
        async with session.get(f"http://127.0.0.1:{info['port']}{path}",
                               headers={"Authorization": f"Bearer {info['token']}"}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def pods(self, session: aiohttp.ClientSession, revision: str | None = None) -> list[dict]:
        """The stack's pods (of one revision if given)."""
        items = (await self.admin(session, "/v1/pods"))["items"]
        return [p for p in items if revision is None or p["revision"] == revision]

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal `surge up` by PID and wait for it to exit; its exit status."""
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


def url(stack: Stack, path: str = "/") -> str:
    """The ingress URL for `path`."""
    return f"http://127.0.0.1:{stack.port}{path}"


def host(service: str, tag: str = "") -> str:
    """The Host header of a service (or one of its tags) in namespace default."""
    return f"{tag + '-' if tag else ''}{service}.default.example.com"


async def get(session: aiohttp.ClientSession, stack: Stack, service: str, path: str = "/",
              headers: dict[str, str] | None = None, tag: str = "") -> tuple[int, Any]:
    """One request through the ingress: (status, JSON body or text)."""
    async with session.get(url(stack, path),
                           headers={"Host": host(service, tag), **(headers or {})}) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


@dataclass
class LoadResult:
    """What a load run saw: statuses, answering revisions, and (start, status, revision)."""

    statuses: Counter
    revisions: Counter
    log: list[tuple[float, int, str]]


async def run_load(session: aiohttp.ClientSession, stack: Stack, service: str, *,
                   clients: int, requests: int | None = None, until: asyncio.Event | None = None,
                   path: str = "/", headers: dict[str, str] | None = None) -> LoadResult:
    """`clients` loops sending requests until `requests` are done in all or `until` is set."""
    result = LoadResult(Counter(), Counter(), [])
    remaining = [requests]

    async def client() -> None:
        while (until is None or not until.is_set()) and (remaining[0] is None or remaining[0] > 0):
            if remaining[0] is not None:
                remaining[0] -= 1
            started = time.monotonic()
            try:
                status, body = await get(session, stack, service, path, headers)
            except aiohttp.ClientError as exc:
                status, body = 0, repr(exc)
            revision = body.get("revision", "") if isinstance(body, dict) else str(body)
            result.statuses[status] += 1
            result.revisions[revision] += 1
            result.log.append((started, status, revision))

    await asyncio.gather(*(client() for _ in range(clients)))
    return result


def pids_of(pods: Iterable[dict]) -> list[int]:
    """Every process id of these pods."""
    return [pid for p in pods for pid in p["pids"].values() if pid]


async def wait_gone(pids: Iterable[int], timeout_s: float) -> None:
    """Until every process in `pids` has ended (a pidfd turns readable); TimeoutError if not."""
    loop = asyncio.get_running_loop()
    fds, futures = [], []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
        fut = loop.create_future()
        loop.add_reader(fds[-1], lambda f=fut: f.done() or f.set_result(None))
        futures.append(fut)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*futures)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)
