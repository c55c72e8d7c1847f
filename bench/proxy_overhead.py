"""Proxy overhead: Surge's queue-proxy against HAProxy, both in front of one fast upstream.

    python bench/proxy_overhead.py [--duration 10] [--rounds 3] [--cc 0,10] [--modes full,1000rps]

What it measures. `bench/upstream.py` answers a fixed small response far faster than any
proxy here, so the proxy is the bottleneck. `hey` hits it three ways, alternating in one
invocation so slow drift (other work on the machine, thermal) spreads over every target:
direct, through Surge, through HAProxy, direct, Surge, HAProxy, ... for `--rounds` rounds.
Each (containerConcurrency, load mode) cell reports the median of its rounds. HAProxy is
configured as the concurrency-limiting proxy Knative's queue-proxy is: server `maxconn` =
containerConcurrency (none for 0), a queue for the rest, one thread. Load modes: `full` is
`hey -c 50` for the duration (throughput and latency at saturation); `1000rps` is
`hey -c 10 -q 100` (hey's -q is per worker), latency at a fixed moderate rate.

Reported per target: requests/s, p50/p90/p99 latency, added latency against direct, the
ratios against HAProxy (throughput surge/haproxy, latency surge/haproxy), the proxy's CPU
seconds per 10k requests (utime+stime of the proxy and its descendants from /proc, before
and after each run) and its peak RSS (VmHWM, summed over its processes).

CPU pinning on a 2-core machine (why it is fair). The proxy under test gets one core to
itself; hey and the upstream share the other. Every proxy is then given the same single
core (HAProxy runs `nbthread 1`, like the single-threaded Python proxy), and the direct
baseline runs hey and the upstream on exactly the core they use in the proxied runs, so
"added latency" is the proxy hop and nothing else. The limit of two cores: a proxy faster
than what one core of hey+upstream can generate (HAProxy is) is capped by the generator,
so at full load the throughput ratio surge/haproxy is an upper bound on Surge's standing;
CPU seconds per 10k requests does not depend on who saturates first and is the figure to
compare efficiency by. `--no-pin` lets the kernel place everything.

hey's output is parsed from its text summary: it has everything needed (requests/s, the
percentiles over every recorded latency, status codes, errors). `-o csv` carries the same
0.1 ms resolution (hey prints seconds with four decimals in both) and would push up to a
million lines per run through Python for no gain.

The system under test is a command line plus an environment template (`--surge-cmd`,
`--surge-env`), with placeholders {python} {host} {port} {upstream_port} {cc}
{admin_port} {stats_port} {metrics_port}. The default is the queue-proxy daemon
(`python -m queue_proxy`, configured by Knative's environment variables) when it is
installed, else the bare proxy runner (`python -m dataplane.proxy`), which has no
concurrency limit. `--py-spy FILE` samples the Surge proxy with py-spy during its first
full-load run and prints where the time goes.

A/B of the Surge proxy in the same run: `--variant NAME:KEY=VALUE[,KEY=VALUE]` (repeatable)
starts another Surge process from the same template with those environment entries on top,
measured as target NAME in the same alternation; `p99/sg` is its p99 against `surge`'s.
Example: `--variant nofreeze:SURGE_GC_FREEZE=0`.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import importlib.util
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("direct", "surge", "haproxy")
MODES = ("full", "1000rps")
INSTALL_HINT = "apt-get update && apt-get install -y hey haproxy"

QUEUE_PROXY_CMD = "{python} -m queue_proxy"
QUEUE_PROXY_ENV = {
    "CONTAINER_CONCURRENCY": "{cc}",
    "QUEUE_SERVING_PORT": "{port}",
    "USER_PORT": "{upstream_port}",
    "REVISION_TIMEOUT_SECONDS": "300",
    "SERVING_NAMESPACE": "bench",
    "SERVING_CONFIGURATION": "bench",
    "SERVING_REVISION": "bench-00001",
    "SERVING_POD": "bench-00001-deployment-0",
    "SERVING_POD_IP": "{host}",
    "QUEUE_ADMIN_PORT": "{admin_port}",
    "QUEUE_STATS_PORT": "{stats_port}",
    "QUEUE_METRICS_PORT": "{metrics_port}",
    "QUEUE_DRAIN_QUIET_SECONDS": "0",
}
RUNNER_CMD = "{python} -m dataplane.proxy --listen {host}:{port} --upstream {host}:{upstream_port}"


@dataclass(frozen=True, slots=True)
class HeyResult:
    """What one hey run reported: rate, latency percentiles (seconds), statuses, errors."""

    requests_per_s: float
    total_s: float
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    status_counts: dict[int, int]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def responses(self) -> int:
        """Responses received, whatever their status."""
        return sum(self.status_counts.values())

    @property
    def non_200(self) -> int:
        """Responses whose status was not 200."""
        return sum(n for code, n in self.status_counts.items() if code != 200)


def parse_hey(text: str) -> HeyResult:
    """Parse hey's text summary; raise ValueError if it has no Requests/sec line."""
    rps = total = None
    pct: dict[int, float] = {}
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.endswith(":") and not line.startswith("["):
            section = line
            continue
        key, _, value = line.partition(":")
        if key == "Requests/sec":
            rps = float(value)
        elif key == "Total" and section == "Summary:":
            total = float(value.split()[0])
        elif section == "Latency distribution:" and "% in " in line:
            p, _, secs = line.partition("% in ")
            pct[int(p)] = float(secs.split()[0])
        elif line.startswith("[") and "]" in line:
            tag, _, rest = line[1:].partition("]")
            if section == "Status code distribution:":
                statuses[int(tag)] = int(rest.split()[0])
            elif section == "Error distribution:":
                errors[rest.strip()] = errors.get(rest.strip(), 0) + int(tag)
    if rps is None or total is None:
        raise ValueError(f"not a hey summary: {text[:200]!r}")
    return HeyResult(rps, total, pct.get(50), pct.get(90), pct.get(99), statuses, errors)


def render_haproxy_config(port: int, upstream_port: int, container_concurrency: int,
                          host: str = "127.0.0.1", timeout_s: int = 300) -> str:
    """An HAProxy config that limits concurrency like the queue-proxy (maxconn = CC; 0 = none)."""
    maxconn = f" maxconn {container_concurrency}" if container_concurrency > 0 else ""
    return "\n".join([
        "global",
        "    nbthread 1",          # one core, like the single-threaded Python proxy
        "    maxconn 4096",        # x2 file descriptors must fit the soft limit
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    timeout connect 5s",
        f"    timeout client {timeout_s}s",
        f"    timeout server {timeout_s}s",
        f"    timeout queue {timeout_s}s",  # waiting for a server slot, like the breaker queue
        "    timeout http-keep-alive 60s",
        "frontend bench",
        f"    bind {host}:{port}",
        "    default_backend app",
        "backend app",
        f"    server app {host}:{upstream_port}{maxconn}",
        "",
    ])


def hey_argv(url: str, mode: str, duration_s: float, concurrency: int, rate: int,
             cpus: int | None) -> list[str]:
    """hey's command line for a load mode: `full` (no rate limit) or `1000rps` (c=10, q=rate/10)."""
    argv = ["hey", "-z", f"{duration_s:g}s"]
    if mode == "full":
        argv += ["-c", str(concurrency)]
    elif mode.endswith("rps"):
        workers = 10  # hey's -q is per worker: 10 workers at rate/10 each
        argv += ["-c", str(workers), "-q", f"{rate / workers:g}"]
    else:
        raise ValueError(f"mode: {mode!r} must be 'full' or '<N>rps'")
    if cpus is not None:
        argv += ["-cpus", str(cpus)]
    return argv + [url]


def per_10k(cpu_s: float, requests: int) -> float | None:
    """CPU seconds per 10,000 requests (None when nothing was served)."""
    return cpu_s * 10_000 / requests if requests else None


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def summarize(runs: Sequence[dict]) -> list[dict]:
    """One row per (cc, mode, target): medians over rounds, added latency and ratios vs HAProxy."""
    # Each metric is the median over rounds on its own (the median run for req/s need not be
    # the median run for p99), then compared with the other targets' medians of the same
    # cell. Example, cc=10 full, 3 rounds: surge p50 5.0/6.0/4.0 ms -> 5.0; direct p50
    # 1.0/1.2/1.1 -> 1.1, so +p50 = 3.9 ms; surge 9000 req/s against HAProxy's 21000 ->
    # rps/ha 0.43. Counts of non-200s and errors are summed: one is already a finding.
    cells: dict[tuple, list[dict]] = {}
    for run in runs:
        cells.setdefault((run["cc"], run["mode"], run["target"]), []).append(run)
    med: dict[tuple, dict] = {}
    for key, group in cells.items():
        med[key] = {m: _median(r[m] for r in group) for m in
                    ("requests_per_s", "p50_s", "p90_s", "p99_s", "cpu_s_per_10k", "sys_share")}
        med[key]["peak_rss_kib"] = max((r["peak_rss_kib"] or 0 for r in group), default=0) or None
        med[key]["non_200"] = sum(r["non_200"] for r in group)
        med[key]["errors"] = sum(sum(r["errors"].values()) for r in group)
        med[key]["rounds"] = len(group)
    rows = []
    for (cc, mode, target), m in med.items():
        direct = med.get((cc, mode, "direct"), {})
        ha = med.get((cc, mode, "haproxy"), {})
        sg = med.get((cc, mode, "surge"), {})
        rows.append({"cc": cc, "mode": mode, "target": target, **m,
                     **{f"added_{p}_s": _diff(m[f"{p}_s"], direct.get(f"{p}_s"))
                        for p in ("p50", "p90", "p99")},
                     "throughput_vs_haproxy": _ratio(m["requests_per_s"], ha.get("requests_per_s")),
                     "p50_vs_haproxy": _ratio(m["p50_s"], ha.get("p50_s")),
                     "p99_vs_haproxy": _ratio(m["p99_s"], ha.get("p99_s")),
                     "p99_vs_surge": _ratio(m["p99_s"], sg.get("p99_s"))})
    order = {t: i for i, t in enumerate(TARGETS)}
    rows.sort(key=lambda r: (r["cc"], r["mode"], order.get(r["target"], 9)))
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The summary rows as a fixed-width text table (latencies in ms)."""
    def ms(v): return "-" if v is None else f"{v * 1000:.2f}"
    def num(v, f): return "-" if v is None else format(v, f)
    head = ("cc", "mode", "target", "req/s", "p50ms", "p90ms", "p99ms", "+p50ms", "+p99ms",
            "rps/ha", "p50/ha", "p99/ha", "p99/sg", "cpu/10k", "sys%", "rssMiB", "non200", "errors")
    lines = [head]
    for r in rows:
        rss = r["peak_rss_kib"] / 1024 if r["peak_rss_kib"] else None
        lines.append((str(r["cc"]), r["mode"], r["target"], num(r["requests_per_s"], ".0f"),
                      ms(r["p50_s"]), ms(r["p90_s"]), ms(r["p99_s"]),
                      ms(r["added_p50_s"]), ms(r["added_p99_s"]),
                      num(r["throughput_vs_haproxy"], ".2f"), num(r["p50_vs_haproxy"], ".2f"),
                      num(r["p99_vs_haproxy"], ".2f"), num(r["p99_vs_surge"], ".2f"),
                      num(r["cpu_s_per_10k"], ".3f"),
                      num(r["sys_share"] and 100 * r["sys_share"], ".0f"),
                      num(rss, ".1f"), str(r["non_200"]), str(r["errors"])))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)


def summarize_collapsed(text: str, top: int = 15) -> list[tuple[str, float, float]]:
    """From py-spy's collapsed stacks: (function, % self samples, % inclusive), by self time."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        # "func (file.py:123)" -> "func (file.py)": rank functions, not lines.
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):  # a recursive frame counts once per sample
            incl[frame] = incl.get(frame, 0) + n
    ranked = sorted(own, key=own.__getitem__, reverse=True)[:top]
    return [(f, 100 * own[f] / total, 100 * incl[f] / total) for f in ranked] if total else []


# --- processes: pinned, logged to files, stopped by PID (also on Ctrl-C and errors) ---------

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _stat_fields(pid: int) -> list[str]:
    # /proc/<pid>/stat: the command name may hold spaces, so split after its closing paren;
    # index 0 is then field 3 (state), 1 is ppid, 11..14 are utime, stime, cutime, cstime.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (HAProxy in master-worker mode, a forking proxy)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid` and its descendants, reaped children included."""
    user = system = 0
    for p in process_tree(pid):
        try:
            f = _stat_fields(p)
            user += int(f[11]) + int(f[13])
            system += int(f[12]) + int(f[14])
        except (OSError, ValueError, IndexError):
            continue
    return user / _CLK_TCK, system / _CLK_TCK


def proc_peak_rss_kib(pid: int) -> int:
    """Peak resident set (VmHWM, KiB) summed over `pid` and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def pinned_cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(proxy CPUs, hey+upstream CPUs): the last allowed core for the proxy, the rest for load."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _child_setup(cpus: set[int] | None):
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        # Die with the bench even if it is SIGKILLed, and run on the chosen cores from exec on.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


class Processes:
    """Every child of the bench: started pinned, logged to a file, stopped by PID on exit."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: dict[int, subprocess.Popen] = {}
        self._logs: dict[int, Path] = {}
        self._proxies: list[int] = []

    def __enter__(self) -> Processes:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        # Both signals unwind through __exit__, even where SIGINT was inherited as ignored
        # (a background job of a script): the children die with the bench either way.
        self._old = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in reversed(list(self._procs)):
            self.stop(pid)
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def spawn(self, name: str, argv: list[str], cpus: set[int] | None,
              env: dict[str, str] | None = None, stdout: int | None = None) -> subprocess.Popen:
        """Start `argv` in its own session (Ctrl-C reaches only the bench, which stops it)."""
        log = self._log_dir / f"{name}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=stdout if stdout is not None else fh, stderr=fh,
                                    env={**os.environ, **(env or {})}, start_new_session=True,
                                    preexec_fn=_child_setup(cpus))
        self._procs[proc.pid], self._logs[proc.pid] = proc, log
        return proc

    def stop(self, pid: int, grace_s: float = 5.0) -> None:
        """SIGTERM `pid` and its descendants, SIGKILL whatever is left after `grace_s`."""
        proc = self._procs.pop(pid, None)
        if proc is None:
            return
        tree = process_tree(pid) if proc.poll() is None else [pid]
        for p in tree:
            _signal(p, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            for p in tree:
                _signal(p, signal.SIGKILL)
            proc.wait(timeout=grace_s)
        if proc.stdout is not None:
            proc.stdout.close()

    def is_alive(self, pid: int) -> bool:
        """Whether the child `pid` is still running."""
        proc = self._procs.get(pid)
        return proc is not None and proc.poll() is None

    def log_tail(self, pid: int, lines: int = 30) -> str:
        """The last lines of the child's stdout/stderr log."""
        log = self._logs.get(pid)
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log else ""

    def start_upstream(self, script: Path, cpus: set[int] | None) -> tuple[int, int]:
        """Start bench/upstream.py on a kernel-chosen port; (pid, port) once it listens."""
        proc = self.spawn("upstream", [sys.executable, str(script), "--port", "0"], cpus,
                          stdout=subprocess.PIPE)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"upstream did not start: {line!r}\n{self.log_tail(proc.pid)}")
        return proc.pid, int(line.rsplit(":", 1)[1])

    def start_proxies(self, cc: int, targets: Sequence[str], upstream_port: int, surge_cmd: str,
                      surge_env: dict[str, str], cpus: set[int] | None,
                      variants: dict[str, dict[str, str]] | None = None,
                      ) -> tuple[dict[str, str], dict[str, int]]:
        """Start Surge and HAProxy for one containerConcurrency; (urls, pids) once both answer 200."""
        host = "127.0.0.1"
        variants = variants or {}
        urls = {"direct": f"http://{host}:{upstream_port}/"}
        pids: dict[str, int] = {}
        for target in targets:
            if target in ("direct", "haproxy"):
                continue
            # "surge" or a --variant of it: the same template, the variant's entries on top.
            ports = {k: _free_port() for k in ("port", "admin_port", "stats_port", "metrics_port")}
            fill = {"python": sys.executable, "host": host, "upstream_port": upstream_port,
                    "cc": cc, **ports}
            argv = [a.format(**fill) for a in shlex.split(surge_cmd)]
            env = {k: v.format(**fill) for k, v in {**surge_env, **variants.get(target, {})}.items()}
            pids[target] = self.spawn(f"{target}-cc{cc}", argv, cpus, env).pid
            urls[target] = f"http://{host}:{ports['port']}/"
        if "haproxy" in targets:
            port = _free_port()
            cfg = self._log_dir / f"haproxy-cc{cc}.cfg"
            cfg.write_text(render_haproxy_config(port, upstream_port, cc, host))
            pids["haproxy"] = self.spawn(f"haproxy-cc{cc}", ["haproxy", "-db", "-f", str(cfg)],
                                         cpus).pid
            urls["haproxy"] = f"http://{host}:{port}/"
        self._proxies = list(pids.values())
        for target, pid in pids.items():
            self._wait_200(target, pid, urls[target], timeout_s=30.0)
        return urls, pids

    def stop_proxies(self) -> None:
        """Stop the proxies of the current containerConcurrency."""
        for pid in self._proxies:
            self.stop(pid)
        self._proxies = []

    def _wait_200(self, name: str, pid: int, url: str, timeout_s: float) -> None:
        # An external process gives no readiness event: poll, bounded, and fail fast if it died.
        host, port = url.split("/")[2].split(":")
        deadline, last = time.monotonic() + timeout_s, "no answer"
        while time.monotonic() < deadline:
            if not self.is_alive(pid):
                raise RuntimeError(f"{name} exited during start-up:\n{self.log_tail(pid)}")
            conn = http.client.HTTPConnection(host, int(port), timeout=1.0)
            try:
                conn.request("GET", "/")
                status = conn.getresponse().status
                if status == 200:
                    return
                last = f"status {status}"
            except OSError as exc:
                last = repr(exc)
            finally:
                conn.close()
            time.sleep(0.05)
        raise TimeoutError(f"{name} not ready within {timeout_s:g}s ({last}):\n{self.log_tail(pid)}")

    def run_hey(self, argv: list[str], cpus: set[int] | None, timeout_s: float) -> str:
        """Run hey to completion and return its summary; raise if it fails or overruns."""
        proc = self.spawn("hey", argv, cpus, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"hey ran past {timeout_s:g}s: {shlex.join(argv)}") from None
        finally:
            self.stop(proc.pid)
        if proc.returncode != 0:
            raise RuntimeError(f"hey exited {proc.returncode}: {self.log_tail(proc.pid)}")
        return out.decode(errors="replace")

    def start_py_spy(self, pid: int, duration_s: float, out: Path, cpus: set[int] | None,
                     native: bool) -> subprocess.Popen:
        """Sample `pid` with py-spy for `duration_s`, collapsed stacks (`--format raw`) to `out`."""
        if shutil.which("py-spy") is None:
            raise RuntimeError("py-spy is missing: pip install py-spy")
        # Without --native, time in C (uvloop, httptools, syscalls) is charged to the
        # innermost Python frame: Runner.run for the loop itself, the callback for the
        # parser. --native names the C frames but pauses the process for each sample, which
        # skews toward syscalls and loses samples at 200 Hz; --nonblocking does not pause.
        mode = ["--native"] if native else ["--nonblocking"]
        argv = ["py-spy", "record", "--pid", str(pid), "--duration", f"{max(int(duration_s) - 1, 1)}",
                "--rate", "200", "--format", "raw", *mode, "--output", str(out)]
        return self.spawn("py-spy", argv, cpus)

    def finish_py_spy(self, proc: subprocess.Popen, out: Path, timeout_s: float) -> None:
        """Wait for py-spy to write its file, then print the top functions by own samples."""
        proc.wait(timeout=timeout_s)
        self.stop(proc.pid)
        if not out.exists():
            print(f"py-spy wrote nothing:\n{self.log_tail(proc.pid)}", file=sys.stderr)
            return
        text = out.read_text()
        samples = sum(int(line.rpartition(" ")[2]) for line in text.splitlines() if line)
        print(f"\npy-spy, {samples} samples ({out}): % own, % inclusive, function")
        for name, own, incl in summarize_collapsed(text):
            print(f"  {own:5.1f}%  {incl:5.1f}%  {name}")
        print(flush=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone: nothing left to stop


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def default_surge_template() -> tuple[str, dict[str, str]]:
    """The queue-proxy daemon when `python -m queue_proxy` exists, else the bare proxy runner."""
    if _has_main("queue_proxy"):
        return QUEUE_PROXY_CMD, dict(QUEUE_PROXY_ENV)
    if _has_main("dataplane", "proxy"):
        return RUNNER_CMD, {}
    raise SystemExit("neither `python -m queue_proxy` nor `python -m dataplane.proxy` exists; "
                     "pass --surge-cmd")


def _has_main(package: str, *sub: str) -> bool:
    # Look for the file rather than import it: importing a submodule runs its package's
    # __init__, and a package being edited may not import; the proxy's own log says why.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(Path(loc, *sub, "__main__.py").is_file() for loc in spec.submodule_search_locations)


def missing_tools() -> list[str]:
    """The external programs this bench needs that are not on PATH."""
    return [t for t in ("hey", "haproxy") if shutil.which(t) is None]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (hey -z)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is kept")
    p.add_argument("--cc", default="0,10", help="containerConcurrency values, comma-separated")
    p.add_argument("--modes", default="full,1000rps", help="load modes: full, <N>rps")
    p.add_argument("--targets", default=",".join(TARGETS), help="subset of direct,surge,haproxy")
    p.add_argument("--concurrency", type=int, default=50, help="hey -c in the full mode")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load per proxy")
    p.add_argument("--surge-cmd", help="command template of the Surge proxy (see docstring)")
    p.add_argument("--surge-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment template entry for the Surge proxy (repeatable)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="another Surge target with these environment entries on top (repeatable)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--json", type=Path, help="where to write the results (default bench/out/)")
    p.add_argument("--py-spy", type=Path, metavar="FILE",
                   help="profile Surge during its first full-load run; collapsed stacks to FILE")
    p.add_argument("--py-spy-native", action="store_true", help="py-spy --native (C frames too)")
    args = p.parse_args(argv)
    args.cc = [int(v) for v in args.cc.split(",") if v]
    args.modes = [m for m in args.modes.split(",") if m]
    args.targets = [t for t in args.targets.split(",") if t]
    for m in args.modes:
        if m != "full" and not (m.endswith("rps") and m[:-3].isdigit()):
            p.error(f"--modes: {m!r} must be 'full' or '<N>rps'")
    if bad := set(args.targets) - set(TARGETS):
        p.error(f"--targets: {sorted(bad)} not in {TARGETS}")
    args.variants = {}
    for item in args.variant:
        name, _, entries = item.partition(":")
        pairs = [e.partition("=") for e in entries.split(",") if e]
        if not name or name in TARGETS or not pairs or any(not sep for _, sep, _ in pairs):
            p.error(f"--variant: {item!r} must be NAME:KEY=VALUE[,KEY=VALUE] with a new NAME")
        args.variants[name] = {k: v for k, _, v in pairs}
        args.targets.append(name)
    return args


def _surge_template(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    cmd, env = (args.surge_cmd, {}) if args.surge_cmd else default_surge_template()
    for item in args.surge_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--surge-env: {item!r} must be KEY=VALUE")
        env[key] = value
    return cmd, env


def _run_cell(procs: Processes, args, cc: int, urls: dict[str, str], pids: dict[str, int],
              upstream_pid: int, load_cpus: set[int] | None, runs: list[dict],
              problems: list[str]) -> None:
    hey_cpus = len(load_cpus) if load_cpus else None
    for mode in args.modes:
        rate = int(mode[:-3]) if mode.endswith("rps") else 0
        for rnd in range(1, args.rounds + 1):
            for target in args.targets:
                pid = pids.get(target)
                cpu0 = proc_cpu_seconds(pid) if pid else (0.0, 0.0)
                up0 = sum(proc_cpu_seconds(upstream_pid))
                spy = None
                if (args.py_spy and target == "surge" and mode == "full" and rnd == 1
                        and cc == args.cc[0]):
                    spy = procs.start_py_spy(pid, args.duration, args.py_spy, load_cpus, args.py_spy_native)
                argv = hey_argv(urls[target], mode, args.duration, args.concurrency, rate, hey_cpus)
                out = procs.run_hey(argv, load_cpus, timeout_s=args.duration + 60)
                res = parse_hey(out)
                user, system = (a - b for a, b in zip(proc_cpu_seconds(pid), cpu0)) if pid else (0, 0)
                up = sum(proc_cpu_seconds(upstream_pid)) - up0
                if spy is not None:
                    procs.finish_py_spy(spy, args.py_spy, timeout_s=args.duration + 30)
                run = {"cc": cc, "mode": mode, "round": rnd, "target": target, "argv": argv,
                       **{k: v for k, v in asdict(res).items() if k != "status_counts"},
                       "status_counts": {str(k): v for k, v in res.status_counts.items()},
                       "responses": res.responses, "non_200": res.non_200,
                       "cpu_s_per_10k": per_10k(user + system, res.responses) if pid else None,
                       # The kernel's share: a proxy that is mostly syscalls gains little
                       # from faster Python.
                       "sys_share": system / (user + system) if pid and user + system else None,
                       "upstream_cpu_s_per_10k": per_10k(up, res.responses),
                       # VmHWM is the peak since the proxy started: it serves every round of a cc.
                       "peak_rss_kib": proc_peak_rss_kib(pid) if pid else None,
                       "profiled": spy is not None}
                runs.append(run)
                line = (f"cc={cc} {mode:>8} round {rnd} {target:>7}: {res.requests_per_s:9.0f} req/s"
                        f"  p50 {1000 * (res.p50_s or 0):.2f} ms  p99 {1000 * (res.p99_s or 0):.2f} ms")
                if res.non_200 or res.errors:
                    line += f"  non-200 {res.status_counts}  errors {res.errors}"
                    problems.append(f"cc={cc} {mode} round {rnd} {target}: statuses "
                                    f"{res.status_counts}, errors {res.errors}")
                print(line, flush=True)
                if pid and not procs.is_alive(pid):
                    problems.append(f"cc={cc} {mode} round {rnd}: {target} died; log tail:\n"
                                    + procs.log_tail(pid))
                    raise RuntimeError(problems[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the alternating benchmark, print the table, write the JSON; non-zero on failure."""
    args = _parse_args(argv)
    if missing := missing_tools():
        print(f"missing {' and '.join(missing)}; install with:\n    {INSTALL_HINT}", file=sys.stderr)
        return 2
    surge_cmd, surge_env = _surge_template(args)
    out = args.json or HERE / "out" / f"proxy_overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    proxy_cpus, load_cpus = pinned_cpus(not args.no_pin)
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_before": _loadavg(),
            "surge_cmd": surge_cmd, "surge_env": surge_env, "proxy_cpus": sorted(proxy_cpus or []),
            "load_cpus": sorted(load_cpus or []), "duration_s": args.duration,
            "rounds": args.rounds, "variants": args.variants, "cpu_count": os.cpu_count(), "argv": sys.argv,
            "haproxy_version": _first_line(["haproxy", "-v"])}
    runs: list[dict] = []
    problems: list[str] = []
    status = 0
    with Processes(out.parent / "logs" / out.stem) as procs:
        try:
            upstream_pid, upstream_port = procs.start_upstream(HERE / "upstream.py", load_cpus)
            for cc in args.cc:
                urls, pids = procs.start_proxies(cc, args.targets, upstream_port, surge_cmd,
                                                 surge_env, proxy_cpus, args.variants)
                for target in args.targets:
                    if target != "direct" and args.warmup > 0:  # fill pools, warm caches
                        warm = hey_argv(urls[target], "full", args.warmup, args.concurrency, 0,
                                        len(load_cpus) if load_cpus else None)
                        procs.run_hey(warm, load_cpus, timeout_s=args.warmup + 60)
                _run_cell(procs, args, cc, urls, pids, upstream_pid, load_cpus, runs, problems)
                procs.stop_proxies()
        except (RuntimeError, TimeoutError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            problems.append(f"aborted: {exc}")
            status = 1
        except KeyboardInterrupt:
            print("interrupted; stopping every process", file=sys.stderr)
            status = 130
    status = status or (1 if problems else 0)  # a non-200 or an error is worth a failing exit
    meta["loadavg_after"] = _loadavg()
    rows = summarize(runs)
    print("\n" + format_table(rows))
    if problems:
        print("\nproblems:\n  " + "\n  ".join(problems))
    out.write_text(json.dumps({"meta": meta, "summary": rows, "runs": runs, "problems": problems},
                              indent=2) + "\n")
    print(f"\nwrote {out}")
    return status


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def _first_line(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""


if __name__ == "__main__":
    sys.exit(main())
