"""Write the synthetic load traces for `python -m autoscaler replay`, deterministically.

    python bench/traces/make_traces.py            # rewrite the CSVs beside this file
    python bench/traces/make_traces.py --out DIR  # write them elsewhere (tests compare)

Every trace is revision-wide concurrency, one row per second (`t,concurrency`), sized
for the defaults (containerConcurrency 0: target 70 per pod, 100 per pod before the
70% utilization):

  step.csv       0 for 30 s, 300 for 150 s, then idle to 300 s: ramp-up and scale to zero.
  spike.csv      50 steady, a 10 s burst to 600 at t = 120: panic mode and its hold.
  diurnal.csv    a day squeezed into 1440 s (1 s per minute), 20 at night to 500 at the
                 afternoon peak, with +-5% noise from a fixed seed.
  idle-gaps.csv  30 s bursts of 120 separated by idle gaps longer than the stable window
                 plus the grace period, so the revision scales to zero between them (cold
                 starts). Idle seconds are left out of the file: gaps in seconds mean 0.

The same inputs always give the same bytes: a fixed seed, fixed decimals, "\\n" endings.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240601


def step() -> list[tuple[int, float]]:
    """0, then 300 from t = 30 to 179, then 0 until t = 299."""
    return [(t, 300.0 if 30 <= t < 180 else 0.0) for t in range(300)]


def spike() -> list[tuple[int, float]]:
    """50 throughout, 600 for t = 120..129; 300 s."""
    return [(t, 600.0 if 120 <= t < 130 else 50.0) for t in range(300)]


def diurnal() -> list[tuple[int, float]]:
    """One day at one second per minute: a cosine from 20 (04:00) to 500 (16:00), noisy."""
    rng = random.Random(SEED)
    rows = []
    for t in range(1440):
        # The trough at minute 240 (04:00) and the peak twelve hours later.
        level = 260.0 - 240.0 * math.cos(2.0 * math.pi * (t - 240) / 1440.0)
        rows.append((t, level * (1.0 + rng.uniform(-0.05, 0.05))))
    return rows


def idle_gaps() -> list[tuple[int, float]]:
    """Bursts of 120 for 30 s starting at 0, 200, 450 and 800; only busy seconds written."""
    rows = [(start + i, 120.0) for start in (0, 200, 450, 800) for i in range(30)]
    return rows + [(999, 0.0)]  # one explicit idle row sets the trace's length: 1000 s


TRACES = {"step.csv": step, "spike.csv": spike, "diurnal.csv": diurnal, "idle-gaps.csv": idle_gaps}


def render(rows: Iterable[tuple[int, float]]) -> str:
    """The CSV text: header, then `second,value` with at most two decimals."""
    lines = ["t,concurrency"]
    # "300.00" -> "300", "12.50" -> "12.5": the decimal point stops the zero stripping.
    lines += [f"{t},{f'{value:.2f}'.rstrip('0').rstrip('.')}" for t, value in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write every trace into --out (default: this directory)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write the CSVs into")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for name, make in TRACES.items():
        (out / name).write_text(render(make()), encoding="utf-8", newline="\n")
        print(out / name)


if __name__ == "__main__":
    main()
