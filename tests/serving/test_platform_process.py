"""Child processes of local pods: log files, exit without reaping, group stop with a deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from dataplane.clock import MonotonicClock
from serving.platform.process import describe_returncode, spawn, stop_group, stop_process

from support.procs import open_pidfds, wait_pidfds

RETURNCODES = [
    pytest.param(0, "exited with code 0", id="clean"),
    pytest.param(3, "exited with code 3", id="error"),
    pytest.param(-9, "killed by SIGKILL", id="sigkill"),
    pytest.param(-15, "killed by SIGTERM", id="sigterm"),
    pytest.param(None, "still running", id="running"),
]


@pytest.mark.parametrize(("code", "want"), RETURNCODES)
def test_describe_returncode(code, want):
    assert describe_returncode(code) == want


# Ignores SIGTERM, starts a grandchild in its group that ignores it too (SIG_IGN survives
# exec), says so on its output, then sleeps.
STUBBORN = (
    "import os, signal, subprocess, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "grandchild = subprocess.Popen(['sleep', '30'])\n"
    "print('ready', grandchild.pid, flush=True)\n"
    "time.sleep(30)\n"
)


async def _read_line_from_fifo(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while not data.endswith(b"\n"):
        ready = loop.create_future()
        loop.add_reader(fd, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        data += os.read(fd, 4096)
    return data


@pytest.mark.integration
async def test_stop_group_kills_what_ignores_sigterm_after_the_grace(tmp_path):
    # The child writes into a FIFO we read, so we know when its SIGTERM handler is set
    # without sleeping.
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    child = None
    try:
        async with asyncio.timeout(20):
            child = spawn([sys.executable, "-c", STUBBORN], role="app", env=dict(os.environ),
                          cwd=str(tmp_path), log_path=str(fifo))
            line = await _read_line_from_fifo(reader)
            assert line.startswith(b"ready ")
            grandchild = open_pidfds([int(line.split()[1])])
            await stop_group(child, [], grace_s=0.3, clock=MonotonicClock())
            await wait_pidfds(grandchild, 5.0)
        assert child.returncode == -signal.SIGKILL
    finally:
        os.close(reader)
        if child is not None and child.returncode is None:
            child.kill_and_reap()


@pytest.mark.integration
async def test_exit_is_seen_without_reaping_and_output_is_appended(tmp_path):
    log = tmp_path / "pod.log"
    log.write_text("earlier\n")
    async with asyncio.timeout(20):
        child = spawn([sys.executable, "-c", "print('hello'); raise SystemExit(4)"], role="app",
                      env=dict(os.environ), cwd=str(tmp_path), log_path=str(log))
        await child.wait_exited()
        # Not reaped yet: the pid (and so the process group id) is still held.
        assert child.returncode is None and os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        assert child.reap() == 4
    assert log.read_text() == "earlier\nhello\n"
    assert child.send_signal(signal.SIGTERM) is False  # reaped: never signal a reused pid


@pytest.mark.integration
async def test_stop_process_terminates_gracefully_within_the_grace(tmp_path):
    async with asyncio.timeout(20):
        child = spawn(["sleep", "30"], role="queue-proxy", env=dict(os.environ), cwd=str(tmp_path),
                      log_path=str(tmp_path / "log"))
        await stop_process(child, grace_s=10.0, clock=MonotonicClock())
    assert child.returncode == -signal.SIGTERM


async def test_a_missing_program_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        spawn(["no-such-program-here"], role="app", env={"PATH": str(tmp_path)}, cwd=str(tmp_path),
              log_path=str(tmp_path / "log"))
