"""A picture of one replay: load against capacity, and pods over time, panic shaded.

Imported only for `replay --plot`, so matplotlib stays optional (`surge[plot]`). It draws
on a Figure with an explicit Agg canvas: files only, no display, and no pyplot, whose
global figure registry and backend switch would leak into whoever imported us.

Two panels sharing the time axis (trace seconds):
  top     the trace's load (concurrency or rps) and the capacity of the ready pods
          (ready x capacity per pod); where load is above capacity, requests queue.
  bottom  the decider's desired pods, the replicas applied (after bounds and the
          scale-to-zero gate) and the ready pods, as steps.
Panic periods are shaded red in both panels.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .replay import ReplayResult

__all__ = ["plot_replay"]

_PANIC_COLOR = "#d62728"


def _spans(flags: tuple[bool, ...]) -> list[tuple[int, int]]:
    """[start, end) second ranges where `flags` is true."""
    spans, start = [], None
    for t, flag in enumerate(flags):
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, len(flags)))
    return spans


def plot_replay(result: ReplayResult, path: Path | str, *, title: str = "") -> None:
    """Draw the replay to a PNG (or any format matplotlib infers from the suffix)."""
    seconds = list(range(len(result.load)))
    capacity = [n * result.capacity_per_pod for n in result.ready]
    desired = [max(d, 0) for d in result.desired]  # -1 (nothing decided yet) drawn as 0
    unit = "concurrent requests" if result.metric == "concurrency" else "requests per second"

    fig = Figure(figsize=(11, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.step(seconds, result.load, where="post", color="black", linewidth=1.2, label=f"load ({result.metric})")
    top.step(seconds, capacity, where="post", color="#1f77b4", linewidth=1.0, linestyle="--",
             label=f"ready capacity ({result.capacity_per_pod:g} per pod)")
    top.set_ylabel(unit)
    bottom.step(seconds, desired, where="post", color="#ff7f0e", linewidth=1.2, label="desired (decider)")
    bottom.step(seconds, result.replicas, where="post", color="#9467bd", linewidth=1.0, linestyle=":",
                label="replicas (applied)")
    bottom.step(seconds, result.ready, where="post", color="#2ca02c", linewidth=1.6, label="ready pods")
    bottom.set_ylabel("pods")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))  # no 1.25 pods
    bottom.set_xlabel("trace second")
    for axes in (top, bottom):
        for i, (start, end) in enumerate(_spans(result.panic)):
            axes.axvspan(start, end, color=_PANIC_COLOR, alpha=0.12, linewidth=0,
                         label="panic" if i == 0 else None)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper right", fontsize="small", framealpha=0.9)
    bottom.set_xlim(0, max(len(seconds) - 1, 1))
    totals = result.totals
    fig.suptitle(
        f"{title}\npod-seconds {totals.pod_seconds}, under-provisioned {totals.under_provisioned_seconds} s, "
        f"queued {totals.queued_requests:.6g}, cold starts {totals.cold_starts}", fontsize="medium")
    fig.savefig(path, dpi=110)
