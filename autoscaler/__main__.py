"""`python -m autoscaler replay`: run a load trace through the autoscaler offline.

Wiring only: read the ConfigMap and the trace, build the revision and the options,
call `autoscaler.replay.replay`, write the JSON and the plot, print the report. The
simulation and every rule live in `autoscaler.replay` and the modules it drives.
Bad input (ConfigMap, annotation, trace, flag) exits 2 with one message naming the key
or line; outputs are written only once everything has succeeded.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from .config import ANNOTATION_PREFIX, AutoscalerConfig, ConfigError
from .replay import (ReplayError, ReplayOptions, format_json, format_report, parse_trace, replay,
                     resolve_revision)

EXIT_BAD_INPUT = 2  # argparse's own code for bad usage
EXIT_OUTPUT_FAILED = 1


def _annotation(text: str) -> tuple[str, str]:
    """`K=V`; a key without a `/` means `autoscaling.knative.dev/K`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    key = key.strip()
    return (key if "/" in key else ANNOTATION_PREFIX + key), value


def _seconds(text: str) -> int:
    """A whole number of seconds (the replay steps 1 s at a time)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line: one `replay` subcommand for now."""
    parser = argparse.ArgumentParser(prog="python -m autoscaler", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rp = commands.add_parser(
        "replay", help="replay a per-second load trace through the autoscaler",
        description="Feed a per-second concurrency or rps trace through the autoscaler's windows, "
                    "decider and decision rules; print per-tick decisions and totals.")
    rp.add_argument("--config", required=True, type=Path,
                    help="config-autoscaler ConfigMap manifest (or a plain data mapping), YAML")
    rp.add_argument("--trace", required=True, type=Path,
                    help="CSV with a header t,concurrency or t,rps, then second,value rows")
    rp.add_argument("--annotation", action="append", default=[], type=_annotation, metavar="K=V",
                    help="a revision annotation (repeatable); K without '/' means "
                         f"{ANNOTATION_PREFIX}K")
    rp.add_argument("--container-concurrency", type=int, default=0, metavar="N",
                    help="the revision's containerConcurrency (0 = no hard limit; capacity per pod "
                         "is then the per-pod target total)")
    rp.add_argument("--tick-interval", type=_seconds, default=2, metavar="S",
                    help="seconds between decider ticks (default 2, Knative's)")
    rp.add_argument("--pod-start-delay", type=_seconds, default=2, metavar="S",
                    help="seconds from requesting a pod to it serving (default 2, at least 1)")
    rp.add_argument("--drain", type=_seconds, default=0, metavar="S",
                    help="seconds a removed pod keeps serving before it is gone (default 0)")
    rp.add_argument("--json", type=Path, metavar="OUT.json", help="write ticks and totals as JSON")
    rp.add_argument("--plot", type=Path, metavar="OUT.png",
                    help="draw load, desired and ready pods and panic periods (needs matplotlib)")
    rp.add_argument("--quiet", action="store_true", help="print the totals only, not every tick")
    return parser


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(str(path), f"cannot read: {exc}") from None


def _load_config(text: str) -> AutoscalerConfig:
    """The ConfigMap, parsed by the config module, minus its `_example` block.

    Workaround: config.py warns about every key it does not know, `_example` included,
    so the shipped example ConfigMap would print a warning on every replay. Knative
    ignores `_example` when parsing; we drop it before handing the manifest over.
    Anything that is not a plain manifest goes to the config module as text, so its
    YAML errors keep their wording.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict) and "_example" in data:
        return AutoscalerConfig.from_configmap(doc | {"data": {k: v for k, v in data.items() if k != "_example"}})
    return AutoscalerConfig.from_yaml(text)


def _run_replay(args: argparse.Namespace) -> int:
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ReplayError("--plot", "needs matplotlib: pip install 'surge[plot]'")
    try:
        config = _load_config(_read(args.config))
    except ConfigError as exc:
        raise ReplayError(str(args.config), "; ".join(str(p) for p in exc.problems)) from None
    setup = resolve_revision(config, dict(args.annotation), container_concurrency=args.container_concurrency)
    options = ReplayOptions(tick_interval_s=args.tick_interval, pod_start_delay_s=args.pod_start_delay,
                            drain_s=args.drain)
    trace = parse_trace(_read(args.trace), name=str(args.trace))
    result = replay(trace, setup, options)
    report = format_report(result, ticks=not args.quiet)
    try:
        if args.plot is not None:
            from .replay_plot import plot_replay  # matplotlib only when asked for

            plot_replay(result, args.plot, title=f"{args.trace.name} with {args.config.name}")
        if args.json is not None:
            args.json.write_text(format_json(result), encoding="utf-8")
    except OSError as exc:
        print(f"replay: cannot write output: {exc}", file=sys.stderr)
        return EXIT_OUTPUT_FAILED
    sys.stdout.write(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the subcommand; the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _run_replay(args)
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
