"""`surge up` as the benchmarks drive it: started, queried and stopped by PID.

Shared by bench/autoscale.py and bench/cold_start.py. `SurgeStack` runs `surge up` from
the repository root in its own session on a temporary state directory and a given port,
waits until its admin API answers (admin.json written, /healthz with the same pid),
then talks to it: the admin API in-process for what is sampled every second (a CLI
process per sample would cost more CPU than the sample), the `surge` CLI for what a
person would type (`surge apply -f`). `stop()` sends SIGTERM, as Ctrl-C does, and
SIGKILLs the process group if the stack has not exited within the grace period.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/<script>.py` from anywhere

from serving.cli import AdminClient  # noqa: E402
from serving.statedir import StateDirError, find_running_stack  # noqa: E402

NAMESPACE = "default"


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SurgeStack:
    """One `surge up` in its own session on a temporary state directory; stopped by PID."""

    def __init__(self, port: int, state_dir: Path, log_path: Path) -> None:
        self.port, self.state_dir, self.log_path = port, state_dir, log_path
        self.proc: subprocess.Popen | None = None
        self.client: AdminClient | None = None
        self.metrics_url: str | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start `surge up` from the repository root; return once its admin API answers."""
        env = dict(os.environ)
        # Pods run `python examples/helloworld/app.py`: make `python` this interpreter,
        # whose environment has aiohttp, whether or not the virtualenv is activated.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "up", "--port", str(self.port),
                 "--state-dir", str(self.state_dir)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"surge up exited with {self.proc.returncode}")
            try:
                stack = find_running_stack(self.state_dir, timeout_s=1.0)
            except StateDirError:
                stack = None
            if stack is not None and stack.pid == self.proc.pid:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"surge up did not serve within {timeout_s:.0f} s")
            time.sleep(0.1)  # admin.json appears once; nothing to wait on but the file
        self.client = AdminClient(self.state_dir)
        self.metrics_url = self._find_metrics()

    def _find_metrics(self) -> str | None:
        """The autoscaler's Prometheus endpoint: admin.json's `metrics_port`, else /metrics."""
        try:
            info = json.loads((self.state_dir / "admin.json").read_text())
        except (OSError, ValueError):
            info = {}
        candidates = []
        if isinstance(info.get("metrics_port"), int):
            candidates.append(f"http://127.0.0.1:{info['metrics_port']}/metrics")
        candidates.append(self.client.stack.url + "/metrics")
        for url in candidates:
            try:
                text = self._get(url)
            except OSError:
                continue
            if "autoscaler_" in text or "# HELP" in text:
                return url
        return None

    def _get(self, url: str, timeout_s: float = 5.0) -> str:
        req = urllib.request.Request(url)
        if self.client is not None and self.client.stack.token:
            req.add_header("Authorization", f"Bearer {self.client.stack.token}")
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.read().decode()

    def surge(self, *args: str, timeout_s: float = 180.0) -> str:
        """Run one `surge` CLI command against this stack; its stdout, or RuntimeError."""
        done = subprocess.run(
            [sys.executable, "-m", "serving.cli", *args, "--state-dir", str(self.state_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"surge {' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def pods(self) -> list[dict[str, Any]]:
        """Every pod, as `surge get pods -o json` lists them."""
        return self.client.call("GET", "/v1/pods")["items"]

    def pod_concurrency(self, pods: Sequence[dict[str, Any]]) -> float:
        """Sum of the pods' last reported average concurrency (queue-proxy stats, JSON)."""
        total = 0.0
        for pod in pods:
            port = (pod.get("ports") or {}).get("stats")
            if port:
                try:
                    stat = json.loads(self._get(f"http://127.0.0.1:{port}/metrics", 2.0))
                except (OSError, ValueError):
                    continue  # a pod starting or going away: it carries no load yet / any more
                total += float(stat.get("average_concurrent_requests", 0.0))
        return total

    def service(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        """The Knative-shaped Service with its status."""
        return self.client.call("GET", f"/v1/namespaces/{namespace}/services/{name}")["service"]

    def metrics_text(self) -> str | None:
        """The autoscaler's Prometheus text, or None when the stack serves none."""
        return None if self.metrics_url is None else self._get(self.metrics_url)

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM `surge up` (as Ctrl-C stops it); SIGKILL its group after `grace_s`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                # Its own session: the group is surge up and anything it left behind.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_size(self) -> int:
        """Bytes `surge up` has printed so far."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_lines(self, offset: int) -> tuple[list[str], int]:
        """Whole lines printed since byte `offset`, and the offset after them."""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a partial last line waits for the next read
        return data[:end].decode(errors="replace").splitlines(), offset + end

    def log_tail(self, lines: int = 30) -> str:
        """The last lines `surge up` printed."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """Make SIGTERM unwind like Ctrl-C, so `finally` stops the stack (in its own session)."""
    signal.signal(signal.SIGTERM, _interrupt)


def wait_for(predicate, what: str, timeout_s: float, poll_s: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy; RuntimeError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def http_get(port: int, host: str, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """GET / through the ingress with a Host header: (status, body)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
