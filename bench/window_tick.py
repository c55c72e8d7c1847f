"""The autoscaler's window tick: numpy WindowBatch against per-revision window objects.

Builds R revisions (default 10,000), each with a stable window (60 s) and a panic window
(6 s) of one algorithm, in two forms side by side: two `WindowBatch` stores (stable and
panic), and a LinearWindow/WeightedWindow pair per revision. It first simulates N seconds
of one record per revision per second (so the windows are full), then times T ticks, each
one second later than the last: record one value per revision into both windows and read
the stable and panic averages of every revision. The two forms alternate tick by tick in
the same process, so machine noise lands on both; every tick's results are compared.

Run from the repository root (about 20 s at the defaults; one core is enough):

    python bench/window_tick.py                       # 10,000 revisions, linear
    python bench/window_tick.py --algorithm weighted-exponential --ticks 50
    python bench/window_tick.py --json window_tick.json

Prints milliseconds per tick (median and best) for each form, the ratio objects / batch
and the largest difference between their averages (0: they are bit-identical). The
figures also go, as JSON, to bench/out/window_tick.json or to `--json PATH`, with the
load average before and after (the machine is shared, so read the ratio, not the ms).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from autoscaler.batch import WindowBatch
from autoscaler.windows import make_window

T0 = 1_000_000.0   # any time scale works; a large start exercises the bucket arithmetic
DEFAULT_JSON = Path(__file__).resolve().parent / "out" / "window_tick.json"


def build(revisions: int, stable_s: float, panic_s: float, algorithm: str):
    """The two stores with their rows, and the per-revision window pairs."""
    stable, panic = WindowBatch(capacity=revisions), WindowBatch(capacity=revisions)
    stable_rows = np.array([stable.add_revision(r, stable_s, algorithm) for r in range(revisions)])
    panic_rows = np.array([panic.add_revision(r, panic_s, algorithm) for r in range(revisions)])
    objects = [(make_window(algorithm, stable_s), make_window(algorithm, panic_s))
               for _ in range(revisions)]
    return (stable, stable_rows, panic, panic_rows), objects


def tick_batch(batch, now: float, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One tick with the stores: record everyone, read both averages for everyone."""
    stable, stable_rows, panic, panic_rows = batch
    stable.record(stable_rows, now, values)
    panic.record(panic_rows, now, values)
    return stable.averages(now)[stable_rows], panic.averages(now)[panic_rows]


def tick_objects(objects, now: float, values: list[float]) -> tuple[list[float], list[float]]:
    """One tick with the per-revision windows."""
    stable_avg, panic_avg = [], []
    for (stable, panic), value in zip(objects, values):
        stable.record(now, value)
        panic.record(now, value)
        stable_avg.append(stable.average(now))
        panic_avg.append(panic.average(now))
    return stable_avg, panic_avg


def run(args: argparse.Namespace) -> dict:
    """Warm both forms up, time the ticks, check they agree; returns the figures."""
    load_before = os.getloadavg()
    rng = np.random.default_rng(args.seed)
    batch, objects = build(args.revisions, args.stable, args.panic, args.algorithm)
    now = T0
    for _ in range(args.seconds):
        values = rng.uniform(0, 50, args.revisions)
        tick_batch(batch, now, values)
        tick_objects(objects, now, values.tolist())
        now += 1.0
    batch_ms, objects_ms, max_diff = [], [], 0.0
    gc.collect()
    for _ in range(args.ticks):
        values = rng.uniform(0, 50, args.revisions)
        listed = values.tolist()
        start = time.perf_counter()
        got = tick_batch(batch, now, values)
        batch_ms.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        want = tick_objects(objects, now, listed)
        objects_ms.append((time.perf_counter() - start) * 1e3)
        for g, w in zip(got, want):
            max_diff = max(max_diff, float(np.max(np.abs(g - np.asarray(w)))))
        now += 1.0
    batch_median, objects_median = statistics.median(batch_ms), statistics.median(objects_ms)
    return {
        "revisions": args.revisions, "stable_window_s": args.stable,
        "panic_window_s": args.panic, "algorithm": args.algorithm,
        "warmup_seconds": args.seconds, "ticks": args.ticks,
        "batch_ms_median": round(batch_median, 3), "batch_ms_best": round(min(batch_ms), 3),
        "objects_ms_median": round(objects_median, 3),
        "objects_ms_best": round(min(objects_ms), 3),
        "ratio_objects_over_batch": round(objects_median / batch_median, 1),
        "max_abs_difference": max_diff,
        "python": sys.version.split()[0], "numpy": np.__version__,
        "machine": platform.machine(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print the figures and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=10_000)
    parser.add_argument("--stable", type=float, default=60.0, help="stable window, seconds")
    parser.add_argument("--panic", type=float, default=6.0, help="panic window, seconds")
    parser.add_argument("--algorithm", default="linear",
                        choices=["linear", "weighted-exponential"])
    parser.add_argument("--seconds", type=int, default=90, help="simulated warm-up seconds")
    parser.add_argument("--ticks", type=int, default=20, help="timed ticks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", type=Path, default=DEFAULT_JSON,
                        help="where to write the figures as JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    figures = run(args)
    print(f"{figures['revisions']} revisions, {args.stable:g}s stable + {args.panic:g}s panic "
          f"{args.algorithm} windows, {args.ticks} ticks after {args.seconds}s warm-up")
    print(f"  batch (WindowBatch):        {figures['batch_ms_median']:9.3f} ms/tick median, "
          f"{figures['batch_ms_best']:.3f} best")
    print(f"  per-revision objects:       {figures['objects_ms_median']:9.3f} ms/tick median, "
          f"{figures['objects_ms_best']:.3f} best")
    print(f"  ratio objects / batch:      {figures['ratio_objects_over_batch']:9.1f}x")
    print(f"  max |batch - objects|:      {figures['max_abs_difference']:.3g}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"  figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
