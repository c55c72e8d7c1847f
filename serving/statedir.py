"""The state directory: where a stack keeps its database, and how commands find it.

One state directory holds one stack:

    <state-dir>/surge.db     the desired state and the event log (serving.store)
    <state-dir>/surge.lock   flock(2)-ed by the running `surge up`; holds its pid as text
    <state-dir>/admin.json   {pid, port, started, token} of the running stack's admin API

Resolution order (`resolve_state_dir`): the `--state-dir` flag, else `SURGE_STATE_DIR`,
else `$XDG_STATE_HOME/surge` (the XDG base-directory spec's home for state that survives
restarts but is not worth backing up), else `~/.local/state/surge`.

Why a lock *and* a pid file: the lock is the only reliable "is someone running here"
answer (the kernel drops it when the holder dies, even on SIGKILL, and pids get reused),
so two `surge up` on one directory refuse. admin.json is how clients learn the port; it
can be stale after a SIGKILL, so `find_running_stack` checks the pid is alive *and* that
the admin API answers /healthz with that same pid before trusting it.

The directory is created 0700 and admin.json 0600: the token in admin.json is what the
admin API asks for, so other local users (and web pages doing requests to loopback) can
read nothing and change nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "ADMIN_FILE",
    "DB_FILE",
    "LOCK_FILE",
    "NoRunningStackError",
    "RunningStack",
    "StackAlreadyRunningError",
    "StateDirError",
    "StateDirLock",
    "default_state_dir",
    "ensure_state_dir",
    "find_running_stack",
    "new_admin_token",
    "read_admin_file",
    "remove_admin_file",
    "resolve_state_dir",
    "write_admin_file",
]

DB_FILE = "surge.db"
LOCK_FILE = "surge.lock"
ADMIN_FILE = "admin.json"
ENV_STATE_DIR = "SURGE_STATE_DIR"
HEALTH_PATH = "/healthz"


class StateDirError(Exception):
    """A problem with the state directory or the stack that owns it."""


class NoRunningStackError(StateDirError):
    """No live stack serves this state directory."""


class StackAlreadyRunningError(StateDirError):
    """Another `surge up` holds this state directory's lock."""


def default_state_dir(env: Mapping[str, str], home: Path) -> Path:
    """The per-user default: `$XDG_STATE_HOME/surge`, else `<home>/.local/state/surge`."""
    xdg = env.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "surge"
    return home / ".local" / "state" / "surge"


def resolve_state_dir(flag: str | os.PathLike[str] | None = None,
                      env: Mapping[str, str] | None = None,
                      home: Path | None = None) -> Path:
    """The state directory: `flag`, else `$SURGE_STATE_DIR`, else the per-user default."""
    env = os.environ if env is None else env
    if flag:
        return Path(flag).expanduser().absolute()
    if env.get(ENV_STATE_DIR):
        return Path(env[ENV_STATE_DIR]).expanduser().absolute()
    return default_state_dir(env, Path.home() if home is None else home)


def ensure_state_dir(state_dir: Path) -> Path:
    """Create `state_dir` (0700, parents as needed) and return it."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"cannot create state directory {state_dir}: {exc.strerror}") from exc
    if not state_dir.is_dir():
        raise StateDirError(f"state directory {state_dir} is not a directory")
    return state_dir


@dataclass(frozen=True, slots=True)
class RunningStack:
    """What admin.json says about the stack serving a state directory."""

    pid: int
    port: int
    started: str
    token: str = ""

    @property
    def url(self) -> str:
        """The admin API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to admin.json."""
        return {"pid": self.pid, "port": self.port, "started": self.started, "token": self.token}


def new_admin_token() -> str:
    """A fresh random bearer token for the admin API."""
    return secrets.token_urlsafe(32)


def write_admin_file(state_dir: Path, *, port: int, token: str = "",
                     pid: int | None = None) -> RunningStack:
    """Atomically write `<state-dir>/admin.json` (0600) for this process; return its content."""
    stack = RunningStack(
        pid=os.getpid() if pid is None else pid,
        port=port,
        # Wall-clock time for people reading `started`; nothing computes with it.
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        token=token,
    )
    # Write a temporary file beside the target, fsync, then rename over it: a reader
    # sees the old file or the whole new one, never half of it.
    fd, tmp = tempfile.mkstemp(prefix=".admin-", suffix=".json", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(stack.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, state_dir / ADMIN_FILE)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return stack


def read_admin_file(state_dir: Path) -> RunningStack | None:
    """admin.json's content, or None when there is none; StateDirError if unreadable."""
    path = state_dir / ADMIN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RunningStack(pid=int(data["pid"]), port=int(data["port"]),
                            started=str(data.get("started", "")),
                            token=str(data.get("token", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateDirError(f"cannot read {path}: {exc}") from exc


def remove_admin_file(state_dir: Path, pid: int | None = None) -> None:
    """Remove admin.json if it belongs to `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    try:
        current = read_admin_file(state_dir)
    except StateDirError:
        current = None
    # Only our own: a file written by another pid is someone else's to remove.
    if current is not None and current.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / ADMIN_FILE).unlink()


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _health_pid(stack: RunningStack, timeout_s: float) -> int | None:
    """The pid the admin API reports on /healthz, or None if it does not answer."""
    try:
        with urllib.request.urlopen(stack.url + HEALTH_PATH, timeout=timeout_s) as resp:
            return int(json.loads(resp.read())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_running_stack(state_dir: Path, timeout_s: float = 2.0) -> RunningStack:
    """The live stack serving `state_dir`, or NoRunningStackError saying how to start one."""
    hint = "start one with `surge up`"
    stack = read_admin_file(state_dir)
    if stack is None:
        raise NoRunningStackError(f"no running stack in {state_dir}: {hint}")
    if not _is_alive(stack.pid):
        raise NoRunningStackError(
            f"no running stack in {state_dir} (pid {stack.pid} in {ADMIN_FILE} is gone): {hint}")
    answered = _health_pid(stack, timeout_s)
    if answered is None:
        raise NoRunningStackError(
            f"no running stack in {state_dir}: pid {stack.pid} does not answer on "
            f"127.0.0.1:{stack.port}; if it is stuck, stop it and {hint}")
    if answered != stack.pid:
        raise NoRunningStackError(
            f"no running stack in {state_dir}: port {stack.port} is served by pid {answered}, "
            f"not pid {stack.pid} from {ADMIN_FILE}: {hint}")
    return stack


class StateDirLock:
    """The exclusive flock on `<state-dir>/surge.lock`, held for the life of `surge up`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise StackAlreadyRunningError naming the holder."""
        ensure_state_dir(self.state_dir)
        # os.open makes a non-inheritable fd (PEP 446), so pods spawned by the stack do
        # not keep the lock alive after the stack dies.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StackAlreadyRunningError(
                    f"another `surge up` (pid {holder}) is already running on {self.state_dir};"
                    f" stop it first or use another --state-dir") from None
            raise StateDirError(f"cannot lock {self.path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the fd releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def is_held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> StateDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
