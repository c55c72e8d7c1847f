"""A real `surge up` subprocess for the end-to-end and Docker suites.

`Stack` starts `python -m serving.cli up` on a free port with its own state directory,
reads its output in the background (so a test can wait for a line instead of sleeping),
runs `surge` commands against it as subprocesses, and stops it by PID. Frequent polling
(pod counts while load runs) goes to the admin API directly, so the machine's two cores
serve the load rather than a CLI start-up per sample. The Docker suite passes
`--platform docker` and longer timeouts; everything else is the same.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (bound together so none repeats, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def config_autoscaler(**data: str) -> str:
    """A config-autoscaler ConfigMap with `data` (keys with _ spelled as -)."""
    lines = "".join(f"  {k.replace('_', '-')}: {json.dumps(v)}\n" for k, v in data.items())
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\n"
            "  namespace: knative-serving\ndata:\n" + lines)


class CliResult(NamedTuple):
    """A finished `surge` command (also unpacks as `rc, out, err`)."""

    rc: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


class Stack:
    """One `surge up` process with its state directory and ingress port."""

    def __init__(self, state_dir: Path, port: int | None = None, *, up_args: Sequence[str] = (),
                 start_timeout_s: float = 20.0, stop_timeout_s: float = 30.0,
                 cli_timeout_s: float = 90.0) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.up_args = tuple(up_args)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.cli_timeout_s = cli_timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._line_added = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    async def start(self) -> None:
        """Start `surge up` and wait for it to say it is ready."""
        self.lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "serving.cli", "up", *self.up_args, "--port", str(self.port),
            "--state-dir", str(self.state_dir), cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read(self.proc))
        await self.wait_line(lambda line: line.startswith("surge: ready"), self.start_timeout_s)

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
            async with asyncio.timeout(self.cli_timeout_s):
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
            async with asyncio.timeout(self.stop_timeout_s):
                rc = await proc.wait()
        except TimeoutError:
            proc.kill()
            rc = await proc.wait()
        if self._reader is not None:
            await self._reader
        return rc
