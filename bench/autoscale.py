"""The seed's autoscaling experiment on the local stack: `hey -c 50 -z 30s`, pods over time.

    python bench/autoscale.py [--concurrency 50] [--duration 30] [--lead 5] [--tail 75]

What it does. Starts `surge up` on a free port with a fresh temporary state directory,
applies examples/autoscaling/service.yaml (containerConcurrency 10, target 10, min-scale
1, max-scale 100), waits for its first pod, then runs hey against the ingress with the
service's Host header. From `--lead` seconds before the load until `--tail` seconds after
it, once a second, it records:

* pods of the revision: total (Pending + Running) and ready, from the admin API (what
  `surge get pods -o json` prints);
* observed concurrency: each live pod's queue-proxy stats endpoint (the Stat the
  autoscaler scrapes: requests in flight averaged over the last second), summed;
* the autoscaler's decisions: from its Prometheus metrics (stable and panic concurrency,
  desired pods, excess burst capacity, panic mode) when the stack serves them (admin.json
  `metrics_port`, else the admin API's `/metrics`); otherwise from the lines `surge up`
  prints for each change of the desired count ("autoscaler wants 4 pod(s), was 2, panic
  mode"): desired pods, and panic as the flag of the latest such line.

Then it stops the stack by PID (SIGTERM, the way Ctrl-C stops it; SIGKILL for the
process group if it has not exited within `--stop-grace` seconds), writes a JSON summary
and a PNG: pods (total, ready, desired) above, concurrency below, panic shaded on both.

What to expect (the KPA, reference sections 1.4 and 2): each pod is meant to carry
target x utilization = 10 x 0.7 = 7 requests, so 50 clients in a closed loop want
ceil(50 / 7) = 8 pods, a little fewer when part of each round trip is spent outside the
revision (in hey, in the proxies). Load arrives far faster than a 60 s average moves, so
the 6 s panic window sees it against 1 x 7 of capacity, at least twice the target: panic
mode, scaling up within a tick or two. The pods stay while the 60 s stable average
remembers the load (and panic never scales down), then come down towards min-scale 1 by
at most half per tick (max-scale-down-rate 2), so `--tail` must exceed 60 s to show the
way back. The summary sets the pods held in the last 10 s of load against that KPA
count for the clients, and against the count the pods' own reported concurrency asks for.
(That concurrency leaves out the requests the activator holds while pods are full,
which the autoscaler counts too: it reads low under overload.)

Not a test: the figures depend on the machine. On a 2-core machine, 8 pods are 16 Python
processes next to the stack and hey, so latencies grow with the pod count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
# bench/ is on sys.path as the script's directory; surge_stack puts the repository there.
from proxy_overhead import parse_hey
from surge_stack import (
    HERE, NAMESPACE, ROOT, SurgeStack, free_port, http_get, stop_on_signals, wait_for,
)

from autoscaler import AutoscalerConfig, resolve_spec
from serving.cli import CliError
from serving.manifests import parse_manifests

INSTALL_HINT = "apt-get update && apt-get install -y hey"
EXAMPLE = ROOT / "examples" / "autoscaling" / "service.yaml"
SERVICE = "autoscale-python"
LIVE_PHASES = ("Pending", "Running")
# The autoscaler's gauges the bench reads (Knative's legacy names, labelled revision_name).
METRICS = {
    "autoscaler_stable_request_concurrency": "stable_concurrency",
    "autoscaler_panic_request_concurrency": "panic_concurrency",
    "autoscaler_desired_pods": "desired_pods",
    "autoscaler_excess_burst_capacity": "excess_burst_capacity",
    "autoscaler_panic_mode": "panic",
}
# What `surge up` prints when the autoscaler changes a revision's desired count, e.g.
# "05:33:27 revision/default/hello-00001: autoscaler wants 2 pod(s), was 1, panic mode"
# (older builds: "... wants 3 pod(s) (panic), was 1"); panic is any mention after it.
DECISION_LINE = re.compile(
    r"revision/[^/\s]+/(?P<revision>[^:\s]+): autoscaler wants (?P<desired>\d+) pod\(s\)"
    r"(?P<rest>.*)")


# --- pure parsing and summarizing ------------------------------------------------------

def live_pods(items: Sequence[dict[str, Any]], revision: str) -> list[dict[str, Any]]:
    """The live pods of `revision`: Pending and Running (not Terminating, not Failed)."""
    return [p for p in items if p.get("revision") == revision and p.get("phase") in LIVE_PHASES]


def parse_autoscaler_metrics(text: str, revision: str) -> dict[str, float]:
    """The METRICS gauges of `revision` from Prometheus text, under their short names."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        short = METRICS.get(family.name)
        if short is None:
            continue
        for sample in family.samples:
            if sample.labels.get("revision_name") == revision:
                out[short] = sample.value
    return out


def parse_decisions(lines: Sequence[str], revision: str) -> list[tuple[int, bool]]:
    """(desired pods, panic) of each decision line `surge up` printed for `revision`."""
    out = []
    for line in lines:
        m = DECISION_LINE.search(line)
        if m and m["revision"] == revision:
            out.append((int(m["desired"]), "panic" in m["rest"]))
    return out


def target_per_pod(manifest_text: str) -> float:
    """The KPA's per-pod target for the manifest's first Service under default config."""
    svc = next(o for o in parse_manifests(manifest_text).objects if hasattr(o, "template"))
    spec = resolve_spec(AutoscalerConfig(), svc.template.annotations,
                        container_concurrency=svc.template.spec.container_concurrency or 0)
    return spec.target_value


@dataclass(frozen=True, slots=True)
class Sample:
    """One second of the experiment; t_s is seconds since the load started."""

    t_s: float
    pods_total: int
    pods_ready: int
    pod_concurrency: float
    desired_pods: float | None = None
    panic: bool | None = None
    stable_concurrency: float | None = None     # only from the autoscaler's metrics
    panic_concurrency: float | None = None
    excess_burst_capacity: float | None = None


def panic_spans(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """[(start, end)) seconds during which the autoscaler reported panic mode."""
    spans, start, last_t = [], None, None
    for s in samples:
        if s.panic and start is None:
            start = s.t_s
        elif not s.panic and start is not None:
            spans.append((start, s.t_s))
            start = None
        last_t = s.t_s
    if start is not None:
        spans.append((start, last_t + 1.0))
    return spans


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(samples: Sequence[Sample], duration_s: float, concurrency: int,
              target: float) -> dict[str, Any]:
    """Headline figures: peak pods, when, pods late in the load against the KPA's ask.

    Worked example: target 7 per pod and 50 clients give a KPA count of ceil(50 / 7) = 8.
    An autoscaler averaging 45 in flight asks for ceil(45 / 7) = 7, and 6 to 8 pods
    there are within the +/-1 the issue allows. The pods' own reports leave out what
    the activator holds, so under overload they read low (6 pods reporting 11 requests
    in flight in all would ask for 2): that gap is where the requests wait.
    """
    load = [s for s in samples if 0 <= s.t_s < duration_s]
    late = [s for s in load if s.t_s >= duration_s - 10] or load
    peak = max((s.pods_total for s in samples), default=0)
    observed = _median([s.pod_concurrency for s in late])
    stable = _median([s.stable_concurrency for s in late if s.stable_concurrency is not None])
    spans = panic_spans(samples)
    after = [s for s in samples if s.t_s >= duration_s]
    return {
        "clients": concurrency,
        "target_per_pod": target,
        "kpa_pods_for_clients": math.ceil(concurrency / target),
        "peak_pods": peak,
        "seconds_to_peak": next((s.t_s for s in samples if s.pods_total == peak), None),
        "seconds_to_first_scale_up": next((s.t_s for s in load if s.pods_total > 1), None),
        "pods_last_10s_of_load": _median([s.pods_total for s in late]),
        "ready_pods_last_10s_of_load": _median([s.pods_ready for s in late]),
        "pod_concurrency_last_10s": observed,
        "kpa_pods_for_pod_concurrency": math.ceil(observed / target) if observed else None,
        # Only when the stack serves the autoscaler's metrics: what it actually averaged.
        "autoscaler_stable_concurrency_last_10s": stable,
        "kpa_pods_for_autoscaler_concurrency": math.ceil(stable / target) if stable else None,
        "panic_spans_s": spans,
        "panic_seconds": sum(b - a for a, b in spans),
        "pods_at_end": samples[-1].pods_total if samples else None,
        "seconds_after_load_to_one_pod": next(
            (s.t_s - duration_s for s in after if s.pods_total <= 1), None),
    }


# --- the plot ----------------------------------------------------------------------------

def plot(samples: Sequence[Sample], duration_s: float, concurrency: int, title: str,
         out: Path, panic_label: str = "panic") -> None:
    """Pods (top) and concurrency (bottom) over time, panic shaded, load period marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only when drawing
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    t = [s.t_s for s in samples]
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    pods_ax, conc_ax = fig.subplots(2, 1, sharex=True)
    pods_ax.step(t, [s.pods_total for s in samples], where="post", label="pods (total)", lw=2)
    pods_ax.step(t, [s.pods_ready for s in samples], where="post", label="pods (ready)", lw=1.5)
    if any(s.desired_pods is not None for s in samples):
        pods_ax.step(t, [s.desired_pods for s in samples], where="post", ls="--",
                     label="desired (decider, before min/max-scale)")
    pods_ax.set_ylabel("pods")
    pods_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    pods_ax.set_ylim(bottom=0)
    conc_ax.axhline(concurrency, color="grey", ls=":", label=f"hey -c {concurrency}")
    conc_ax.plot(t, [s.pod_concurrency for s in samples], label="in flight at the pods")
    if any(s.stable_concurrency is not None for s in samples):
        conc_ax.plot(t, [s.stable_concurrency for s in samples], label="stable (autoscaler)")
        conc_ax.plot(t, [s.panic_concurrency for s in samples], label="panic (autoscaler)")
    conc_ax.set_ylabel("requests in flight")
    conc_ax.set_xlabel("seconds since the load started (shaded blue: hey running)")
    conc_ax.set_ylim(bottom=0)
    for ax in (pods_ax, conc_ax):
        ax.axvspan(0, duration_s, color="tab:blue", alpha=0.06, lw=0)
        for i, (a, b) in enumerate(panic_spans(samples)):
            ax.axvspan(a, b, color="tab:red", alpha=0.18, lw=0,
                       label=panic_label if i == 0 else None)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    pods_ax.set_title(title)
    fig.savefig(out, dpi=110)


# --- the run -----------------------------------------------------------------------------

def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", "-c", type=int, default=50, help="hey -c (default 50)")
    p.add_argument("--duration", "-z", type=int, default=30, help="hey -z, seconds (default 30)")
    p.add_argument("--lead", type=int, default=5, help="seconds sampled before the load")
    p.add_argument("--tail", type=int, default=75,
                   help="seconds sampled after the load (default 75: past the 60 s window)")
    p.add_argument("--manifest", type=Path, default=EXAMPLE, help="service manifest to apply")
    p.add_argument("--service", default=SERVICE, help="the manifest's service name")
    p.add_argument("--port", type=int, default=0, help="ingress port (default: a free one)")
    p.add_argument("--json", type=Path, default=HERE / "out" / "autoscale.json",
                   help="summary JSON (the PNG and surge up's output go beside it)")
    p.add_argument("--stop-grace", type=float, default=30.0,
                   help="seconds surge up gets to stop before SIGKILL")
    return p.parse_args(argv)


class Sampler(threading.Thread):
    """Samples the revision once a second on a thread while hey runs in the foreground."""

    def __init__(self, stack: SurgeStack, revision: str, t0: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.revision, self.t0 = stack, revision, t0
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self._log_offset = stack.log_size()
        self._desired: int | None = None
        self._panic: bool | None = None

    def run(self) -> None:
        """One sample per whole second of the monotonic clock after t0, until stopped."""
        tick = 0
        while not self.stopping.is_set():
            due = self.t0 + tick
            if (wait := due - time.monotonic()) > 0 and self.stopping.wait(wait):
                return
            try:
                self.samples.append(self._sample(round(due - self.t0, 3)))
            except (CliError, OSError, ValueError) as exc:
                self.errors.append(f"t={time.monotonic() - self.t0:.1f}: {exc}")
            # Skip ticks missed while the stack was slow to answer, rather than bunching.
            tick = max(tick + 1, math.floor(time.monotonic() - self.t0) + 1)

    def _sample(self, t_s: float) -> Sample:
        live = live_pods(self.stack.pods(), self.revision)
        ready = sum(1 for p in live if p.get("ready"))
        concurrency = self.stack.pod_concurrency(live)
        text = self.stack.metrics_text()
        metrics = parse_autoscaler_metrics(text, self.revision) if text else {}
        if metrics:
            panic = metrics.pop("panic", None)
            return Sample(t_s, len(live), ready, concurrency,
                          panic=None if panic is None else panic >= 1, **metrics)
        lines, self._log_offset = self.stack.log_lines(self._log_offset)
        for desired, panic in parse_decisions(lines, self.revision):
            self._desired, self._panic = desired, panic
        return Sample(t_s, len(live), ready, concurrency, self._desired, self._panic)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment; 0 on success, 1 on a failure, 2 when hey is missing."""
    args = _parse_args(argv)
    stop_on_signals()
    if shutil.which("hey") is None:
        print(f"autoscale: hey is not installed; run: {INSTALL_HINT}", file=sys.stderr)
        return 2
    target = target_per_pod(args.manifest.read_text(encoding="utf-8"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="surge-bench-"))
    port = args.port or free_port()
    log_path = args.json.with_suffix(".surge-up.log")
    log_path.unlink(missing_ok=True)
    stack = SurgeStack(port, state_dir, log_path)
    host = f"{args.service}.{NAMESPACE}.example.com"
    try:
        stack.start()
        print(f"surge up: pid {stack.proc.pid}, ingress 127.0.0.1:{port}; autoscaler metrics: "
              f"{stack.metrics_url or 'not served, reading its decision lines'}", flush=True)
        print(stack.surge("apply", "-f", str(args.manifest)), end="", flush=True)
        revision = wait_for(lambda: stack.service(args.service)["status"].get(
            "latestReadyRevisionName"), "the revision to become ready", 120)
        status, body = http_get(port, host)
        if status != 200:
            raise RuntimeError(f"GET with Host {host} answered {status}: {body[:200]!r}")
        hey = ["hey", "-c", str(args.concurrency), "-z", f"{args.duration}s", "-host", host,
               f"http://127.0.0.1:{port}/"]
        print(f"{revision} ready; sampling {args.lead} s, then: {' '.join(hey)}", flush=True)
        t0 = time.monotonic() + args.lead
        sampler = Sampler(stack, revision, t0 - args.lead)
        sampler.start()
        time.sleep(max(0.0, t0 - time.monotonic()))
        out = subprocess.run(hey, capture_output=True, text=True, check=False,
                             timeout=args.duration + 120)
        load_end = time.monotonic()
        time.sleep(max(0.0, load_end + args.tail - time.monotonic()))
        sampler.stopping.set()
        sampler.join(timeout=10)
    except (RuntimeError, CliError, subprocess.TimeoutExpired) as exc:
        print(f"autoscale: {exc}; the end of surge up's output:", file=sys.stderr)
        print(stack.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autoscale: interrupted; stopping the stack", file=sys.stderr)
        return 130
    finally:
        code = stack.stop(args.stop_grace)
        print(f"surge up stopped (exit status {code})", flush=True)
        shutil.rmtree(state_dir, ignore_errors=True)

    if out.returncode != 0:
        print(f"autoscale: hey failed ({out.returncode}): {out.stderr.strip()}", file=sys.stderr)
        return 1
    # The sampler's clock started `lead` seconds early; shift so 0 is when hey started.
    samples = [Sample(**{**asdict(s), "t_s": round(s.t_s - args.lead, 3)})
               for s in sampler.samples]
    result = parse_hey(out.stdout)
    summary = summarize(samples, args.duration, args.concurrency, target)
    doc = {
        "experiment": {"hey": hey, "manifest": str(args.manifest.relative_to(ROOT))
                       if args.manifest.is_relative_to(ROOT) else str(args.manifest),
                       "revision": revision, "lead_s": args.lead, "tail_s": args.tail,
                       "decisions_from": "autoscaler metrics" if stack.metrics_url
                       else "surge up decision lines",
                       "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "hey": {"requests_per_s": result.requests_per_s, "p50_s": result.p50_s,
                "p90_s": result.p90_s, "p99_s": result.p99_s,
                "status_counts": result.status_counts, "errors": result.errors},
        "summary": summary,
        "sample_errors": sampler.errors,
        "samples": [asdict(s) for s in samples],
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    png = args.json.with_suffix(".png")
    plot(samples, args.duration, args.concurrency,
         f"{revision}: hey -c {args.concurrency} -z {args.duration}s, target {target:g} per pod",
         png, "panic" if stack.metrics_url else "panic (as of the last decision line)")
    print(f"hey: {result.requests_per_s:.0f} requests/s, p50 {_ms(result.p50_s)}, "
          f"p99 {_ms(result.p99_s)}, statuses {result.status_counts}, "
          f"errors {sum(result.errors.values())}")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"wrote {args.json} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
