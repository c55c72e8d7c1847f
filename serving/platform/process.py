"""Child processes for local pods: their own process group, dead with their parent.

Why each rule:

- Own process group (not the parent's): Ctrl-C in a terminal signals the foreground
  group, which is `surge up` alone; the platform then stops pods in order (activator
  first, queue-proxy drain, then the app). A pod's two processes share one group, led
  by the app, so `kill -- -PGID` or the final SIGKILL also takes any helper processes
  the app started.
- PR_SET_PDEATHSIG=SIGKILL, set in the child between fork and exec (Linux): when the
  parent dies, even by SIGKILL, the kernel kills the child, so no pod outlives
  `surge up`. The kernel ties it to the forking *thread*, so children must be spawned
  from the event loop's thread (never an executor). If the parent died before prctl
  ran, the child sees a different parent pid and exits at once. Elsewhere (no prctl)
  children survive a SIGKILLed parent; a clean exit still stops them.
  Processes the app starts itself do not inherit the setting: they die with the
  group's final SIGKILL on a clean stop, but after a SIGKILL of `surge up` they are
  only stopped if they watch their own parent.
- The exit is seen without reaping (a pidfd, else waitid(WNOWAIT) polling), so the
  group leader stays a zombie until the platform has signalled its group: a process
  group id cannot be reused while its leader's pid is held, so `killpg` never hits a
  stranger's group.
- stdout and stderr go straight to an append-mode log file the child writes itself:
  no pipe for the parent to pump, and the log survives the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from dataplane import first_of
from dataplane.clock import Clock

__all__ = ["ChildProcess", "describe_returncode", "spawn", "stop_group", "stop_process"]

_log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
# Fallback exit polling where there is no pidfd (not Linux, or a kernel before 5.3).
_POLL_S = 0.1
# After SIGKILL a process is gone within milliseconds unless stuck in the kernel.
_KILL_WAIT_S = 5.0


def _die_with_parent(parent_pid: int):
    prctl = _LIBC.prctl if _LIBC is not None else None

    def preexec() -> None:
        # Runs in the child after fork: only async-signal-safe work (the libc symbol was
        # resolved before the fork).
        if prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:
            os._exit(126)  # the parent died before the death signal was armed

    return preexec


def describe_returncode(code: int | None) -> str:
    """`exited with code 3`, `killed by SIGKILL`, or `still running`."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ChildProcess:
    """A spawned child whose exit the event loop notices; reaped only when asked."""

    def __init__(self, popen: subprocess.Popen, role: str, leads_group: bool = False) -> None:
        self.role = role
        self.leads_group = leads_group
        self._popen = popen
        self.pid = popen.pid
        self._reaped = False
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[None] = self._loop.create_future()
        self._pidfd: int | None = None
        self._poll_handle: asyncio.TimerHandle | None = None
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._poll_handle = self._loop.call_soon(self._poll)
        else:
            self._loop.add_reader(self._pidfd, self._on_exit)

    @property
    def has_exited(self) -> bool:
        """True once the process has ended (reaped or not)."""
        return self._exited.done()

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (negative: killed by that signal), else None."""
        return self._popen.returncode if self._reaped else None

    async def wait_exited(self) -> None:
        """Until the process has ended; does not reap it."""
        await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> bool:
        """Signal the process; False if it is already reaped (its pid may be reused)."""
        if self._reaped:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        return True

    def signal_group(self, sig: int) -> bool:
        """Signal this child's process group; only valid for a group leader not yet reaped."""
        if self._reaped or not self.leads_group:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        return True

    def kill_and_reap(self) -> None:
        """SIGKILL now (the whole group if this child leads one); reap once its exit is seen."""
        if self._reaped:
            return
        if self.leads_group:
            self.signal_group(signal.SIGKILL)
        self.send_signal(signal.SIGKILL)
        self._exited.add_done_callback(lambda _: self.reap())

    def reap(self) -> int | None:
        """Collect the exit status of an ended process; None if it is still running."""
        if self._reaped:
            return self._popen.returncode
        if not self._exited.done():
            return None
        self._popen.wait()
        self._reaped = True
        self._stop_watching()
        return self._popen.returncode

    def _on_exit(self) -> None:
        self._stop_watching()
        if not self._exited.done():
            self._exited.set_result(None)

    def _poll(self) -> None:
        self._poll_handle = None
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = True  # already reaped elsewhere: treat as ended
        if info is None:
            self._poll_handle = self._loop.call_later(_POLL_S, self._poll)
        else:
            self._on_exit()

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None

    def __repr__(self) -> str:
        state = describe_returncode(self.returncode) if self._reaped else (
            "exited" if self.has_exited else "running")
        return f"<ChildProcess {self.role} pid={self.pid} {state}>"


def spawn(argv: Sequence[str], *, role: str, env: Mapping[str, str], cwd: str | None,
          log_path: str, process_group: int = 0) -> ChildProcess:
    """Start `argv` in process group `process_group` (0: a new group it leads), dying with us.

    Output (stdout and stderr) is appended to `log_path`. Raises OSError when the
    program cannot be started (not found, not executable, bad working directory).
    Call from the event loop's thread (see the module docstring).
    """
    with open(log_path, "ab", buffering=0) as log:
        popen = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, close_fds=True, process_group=process_group,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    return ChildProcess(popen, role, leads_group=process_group == 0)


async def _wait_all_exited(children: Sequence[ChildProcess], timeout_s: float, clock: Clock) -> bool:
    pending = [c for c in children if not c.has_exited]
    if not pending:
        return True
    await first_of(asyncio.gather(*(c.wait_exited() for c in pending)), clock.sleep(timeout_s))
    return all(c.has_exited for c in children)


async def stop_group(leader: ChildProcess, others: Sequence[ChildProcess], *, grace_s: float,
                     clock: Clock, sig: int = signal.SIGTERM) -> None:
    """Stop a process group: `sig` to the group, wait up to `grace_s`, then SIGKILL it; reap.

    `leader` leads the group (its pid is the group id); `others` are members we
    spawned. The leader is reaped last, so the group id stays ours throughout.
    """
    children = [leader, *others]
    if grace_s > 0 and sig not in (0, signal.SIGKILL):
        leader.signal_group(sig)
        for child in others:
            child.send_signal(sig)  # in case it is not in the leader's group
        await _wait_all_exited(children, grace_s, clock)
    # Also sweeps helpers the app started that ignore SIGTERM or outlived it.
    leader.signal_group(signal.SIGKILL)
    for child in others:
        child.send_signal(signal.SIGKILL)
    if not await _wait_all_exited(children, _KILL_WAIT_S, clock):
        stuck = [c for c in children if not c.has_exited]
        _log.error("processes still alive %gs after SIGKILL: %s", _KILL_WAIT_S, stuck)
    for child in [*others, leader]:
        child.reap()


async def stop_process(child: ChildProcess, *, grace_s: float, clock: Clock,
                       sig: int = signal.SIGTERM) -> None:
    """Stop one process: `sig` (0: none, it was already told), wait `grace_s`, SIGKILL; reap."""
    if sig:
        child.send_signal(sig)
    if not await _wait_all_exited([child], grace_s, clock):
        _log.warning("%r still running %gs after being asked to stop: SIGKILL", child, grace_s)
        child.send_signal(signal.SIGKILL)
        if not await _wait_all_exited([child], _KILL_WAIT_S, clock):
            _log.error("%r still alive %gs after SIGKILL", child, _KILL_WAIT_S)
    child.reap()
