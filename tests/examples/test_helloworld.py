"""The hello-world example answers, logs, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "helloworld" / "app.py"
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_listening(port: int, proc) -> None:
    async with asyncio.timeout(15):
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"app exited early with {proc.returncode}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


@pytest.mark.parametrize(("target", "want"), [(None, "Hello World!\n"), ("Surge", "Hello Surge!\n")])
async def test_greets_target_and_exits_zero_on_sigterm(target, want):
    port = _free_port()
    env = dict(os.environ, PORT=str(port))
    env.pop("TARGET", None)
    if target:
        env["TARGET"] = target
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(APP), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await _wait_listening(port, proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/?q=1") as resp:
                assert resp.status == 200
                assert await resp.text() == want
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert "GET /?q=1 200" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
