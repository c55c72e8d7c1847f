"""serving.statedir: resolving the directory, admin.json, finding the stack, the lock."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web

from serving.statedir import (
    NoRunningStackError,
    StackAlreadyRunningError,
    StateDirError,
    StateDirLock,
    find_running_stack,
    read_admin_file,
    remove_admin_file,
    resolve_state_dir,
    write_admin_file,
)

HOME = Path("/home/u")

RESOLVE_CASES = [
    pytest.param("/srv/flag", {"SURGE_STATE_DIR": "/srv/env"}, "/srv/flag", id="flag-wins"),
    pytest.param(None, {"SURGE_STATE_DIR": "/srv/env", "XDG_STATE_HOME": "/x"}, "/srv/env",
                 id="env-over-xdg"),
    pytest.param(None, {"SURGE_STATE_DIR": ""}, "/home/u/.local/state/surge",
                 id="empty-env-is-unset"),
    pytest.param(None, {"XDG_STATE_HOME": "/xdg"}, "/xdg/surge", id="xdg-state-home"),
    pytest.param(None, {"XDG_STATE_HOME": "rel/dir"}, "/home/u/.local/state/surge",
                 id="relative-xdg-is-ignored"),
    pytest.param(None, {}, "/home/u/.local/state/surge", id="per-user-default"),
    pytest.param("", {"SURGE_STATE_DIR": "/srv/env"}, "/srv/env", id="empty-flag-is-unset"),
]


@pytest.mark.parametrize(("flag", "env", "want"), RESOLVE_CASES)
def test_resolve_state_dir(flag, env, want):
    assert resolve_state_dir(flag, env=env, home=HOME) == Path(want)


def test_relative_flag_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_state_dir("state", env={}, home=HOME) == tmp_path / "state"


def test_admin_file_round_trip_is_private_and_atomic(tmp_path):
    written = write_admin_file(tmp_path, port=4321, token="t0k", pid=99)
    assert read_admin_file(tmp_path) == written
    assert (written.pid, written.port, written.token) == (99, 4321, "t0k")
    assert written.url == "http://127.0.0.1:4321"
    assert stat.S_IMODE((tmp_path / "admin.json").stat().st_mode) == 0o600
    # No temporary file is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.json"]


def test_missing_admin_file_reads_none(tmp_path):
    assert read_admin_file(tmp_path) is None


def test_garbled_admin_file_is_a_clear_error(tmp_path):
    (tmp_path / "admin.json").write_text("{not json")
    with pytest.raises(StateDirError, match="cannot read .*admin.json"):
        read_admin_file(tmp_path)


def test_remove_admin_file_only_removes_our_own(tmp_path):
    write_admin_file(tmp_path, port=1, pid=12345)
    remove_admin_file(tmp_path, pid=54321)
    assert read_admin_file(tmp_path) is not None
    remove_admin_file(tmp_path, pid=12345)
    assert read_admin_file(tmp_path) is None
    remove_admin_file(tmp_path, pid=12345)  # already gone: no error


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _health_server(pid: int):
    """A stand-in admin API on a loopback port answering /healthz with `pid`."""
    async def healthz(_request):
        return web.json_response({"status": "ok", "pid": pid})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def test_no_admin_file_says_how_to_start_a_stack(tmp_path):
    with pytest.raises(NoRunningStackError) as err:
        find_running_stack(tmp_path)
    assert str(err.value) == f"no running stack in {tmp_path}: start one with `surge up`"


def test_dead_pid_is_no_running_stack(tmp_path):
    write_admin_file(tmp_path, port=_closed_port(), pid=_dead_pid())
    with pytest.raises(NoRunningStackError, match=r"is gone\): start one with `surge up`"):
        find_running_stack(tmp_path)


def test_live_pid_with_silent_port_is_no_running_stack(tmp_path):
    write_admin_file(tmp_path, port=_closed_port())
    with pytest.raises(NoRunningStackError, match=r"does not answer on 127\.0\.0\.1:"):
        find_running_stack(tmp_path, timeout_s=1.0)


async def test_port_answered_by_another_pid_is_no_running_stack(tmp_path):
    runner, port = await _health_server(pid=os.getpid() + 1)
    try:
        write_admin_file(tmp_path, port=port)
        async with asyncio.timeout(10):
            with pytest.raises(NoRunningStackError, match="is served by pid"):
                await asyncio.to_thread(find_running_stack, tmp_path)
    finally:
        await runner.cleanup()


async def test_live_stack_is_found(tmp_path):
    runner, port = await _health_server(pid=os.getpid())
    try:
        written = write_admin_file(tmp_path, port=port, token="abc")
        async with asyncio.timeout(10):
            assert await asyncio.to_thread(find_running_stack, tmp_path) == written
    finally:
        await runner.cleanup()


def test_second_lock_on_one_state_dir_refuses(tmp_path):
    state = tmp_path / "state"
    with StateDirLock(state) as first:
        assert first.is_held
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        with pytest.raises(StackAlreadyRunningError) as err:
            StateDirLock(state).acquire()
        assert str(err.value) == (
            f"another `surge up` (pid {os.getpid()}) is already running on {state};"
            " stop it first or use another --state-dir")
    assert not first.is_held
    with StateDirLock(state):  # released: free again
        pass


@pytest.mark.integration
def test_lock_dies_with_its_holder_even_on_sigkill(tmp_path):
    script = textwrap.dedent("""
        import sys, pathlib
        from serving.statedir import StateDirLock
        lock = StateDirLock(pathlib.Path(sys.argv[1]))
        lock.acquire()
        print("locked", flush=True)
        sys.stdin.read()
    """)
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=root,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "locked\n"
        with pytest.raises(StackAlreadyRunningError, match=f"pid {child.pid}"):
            StateDirLock(tmp_path).acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        with StateDirLock(tmp_path) as lock:
            assert lock.is_held
            assert json.loads((tmp_path / "surge.lock").read_text()) == os.getpid()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdin.close()
        child.stdout.close()


def test_state_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(StateDirError, match="cannot create state directory"):
        StateDirLock(target).acquire()
