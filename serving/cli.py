"""The `surge` command line: `surge up` runs the stack, every other command talks to it.

Every command but `up` finds the running stack from the state directory (`--state-dir`,
else SURGE_STATE_DIR, else the per-user default; serving.statedir) and calls its admin
API (serving.admin) with urllib: a command is one or two requests and then exit, so the
stdlib client keeps start-up short and needs no event loop. `surge up` takes the state
directory's lock and then hands over to `serving.stack.run(port=, state_dir=)`, which
the stack module provides: it runs the stack in the foreground until SIGINT/SIGTERM and
returns the exit status. It is imported only by `up`, so the other commands stay light.

Exit status: 0 on success, 1 on an error (one line on stderr starting `surge: `; when
the stack rejected a manifest or an update, the line goes on with every problem as
`object: field.path: reason`, separated by `; `), 2 on a usage error (argparse's), 130
on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serving.cli_format import (
    LogTailer,
    describe_text,
    pods_table,
    revisions_table,
    routes_table,
    services_table,
)
from serving.client import (
    AdminClient, CliError, parse_env, parse_tags, parse_traffic, parse_untags,
)
from serving.statedir import StateDirError, StateDirLock, resolve_state_dir

__all__ = ["AdminClient", "CliError", "main", "parse_env", "parse_tags", "parse_traffic",
           "parse_untags"]

DEFAULT_PORT = 8080
# apply/update/delete return once the stack stored and routed the change; allow for a
# busy stack, but never hang forever.
WRITE_TIMEOUT_S = 120.0
FOLLOW_POLL_S = 0.2
FOLLOW_REFRESH_S = 2.0
KIND_ALIASES = {
    "services": "services", "service": "services", "svc": "services", "ksvc": "services",
    "revisions": "revisions", "revision": "revisions", "rev": "revisions",
    "routes": "routes", "route": "routes", "rt": "routes",
    "pods": "pods", "pod": "pods", "po": "pods",
}


def _service_path(ns: str, name: str) -> str:
    return f"/v1/namespaces/{urllib.parse.quote(ns, safe='')}/services/" \
           f"{urllib.parse.quote(name, safe='')}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


# --- commands --------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    """Run the stack in the foreground, holding the state directory's lock."""
    try:
        # Imported here: only `up` needs the stack and everything it pulls in.
        stack = importlib.import_module("serving.stack")
    except ModuleNotFoundError as exc:
        if exc.name == "serving.stack":
            raise CliError("this build has no stack to run (serving.stack is missing)") from None
        raise CliError(f"cannot start the stack: {exc}") from None
    with StateDirLock(args.state_dir):
        # The platform options go only with a non-default platform: `stack.run(port=,
        # state_dir=)` stays the whole contract of the default local stack.
        options = {} if args.platform == "local" else {
            "platform": args.platform, "queue_proxy_image": args.queue_proxy_image}
        return int(stack.run(port=args.port, state_dir=args.state_dir, **options) or 0)


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _run_daemon(main_coro: Any, log_level: str = "info") -> int:
    """Run a daemon's coroutine on uvloop until it ends or SIGTERM/SIGINT cancels it.

    Logs go to stderr (a container's log) at `log_level`; kubernetes_asyncio and aiohttp
    stay at warning, as their info lines are per-request noise.
    """
    import asyncio
    import logging
    import signal

    import uvloop

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("kubernetes_asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))

    async def runner() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        await main_coro

    try:
        uvloop.run(runner())
    except asyncio.CancelledError:
        return 0
    return 0


def cmd_controller(args: argparse.Namespace) -> int:
    """Reconcile Knative Services on the cluster of --kubeconfig (or in-cluster)."""
    # Imported here: kubernetes_asyncio is heavy and only these commands need it.
    from serving.kubernetes.controller import run_controller
    return _run_daemon(run_controller(args.kubeconfig, namespace=args.watch_namespace),
                       args.log_level)


def cmd_autoscaler(args: argparse.Namespace) -> int:
    """Scale revisions' Deployments on the cluster of --kubeconfig (or in-cluster)."""
    from serving.kubernetes.autoscaler_main import run_autoscaler
    return _run_daemon(run_autoscaler(args.kubeconfig, args.stats_port,
                                      args.metrics_port or None), args.log_level)


def cmd_activator(args: argparse.Namespace) -> int:
    """Serve the ingress for the cluster of --kubeconfig (or in-cluster)."""
    from serving.kubernetes.activator_main import run_activator
    return _run_daemon(run_activator(args.kubeconfig, args.port, args.autoscaler,
                                     metrics_port=args.metrics_port or None), args.log_level)


def _read_manifest(name: str) -> tuple[str, str]:
    if name == "-":
        return "<stdin>", sys.stdin.read()
    try:
        return name, Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"cannot read {name}: {reason}") from None


def cmd_apply(args: argparse.Namespace) -> int:
    """Send every file's documents in one apply; print what happened to each object."""
    docs = [_read_manifest(f) for f in args.filename]
    client = AdminClient(args.state_dir)
    answer = client.call("POST", "/v1/apply",
                         {"documents": [{"filename": f, "text": t} for f, t in docs]},
                         WRITE_TIMEOUT_S)
    for obj in answer["applied"]:
        kind = str(obj.get("kind", "object")).lower()
        group = "" if kind == "configmap" else ".serving.knative.dev"
        print(f"{kind}{group}/{obj.get('name')} {obj.get('action', 'applied')}"
              f" (namespace {obj.get('namespace', 'default')})")
    return 0


_TABLES: dict[str, Callable[..., str]] = {
    "services": services_table, "routes": routes_table, "pods": pods_table,
}


def cmd_get(args: argparse.Namespace) -> int:
    """List objects of one kind, as a table or a JSON List."""
    client = AdminClient(args.state_dir)
    query = "" if args.namespace is None else "?namespace=" + urllib.parse.quote(args.namespace)
    items = client.call("GET", f"/v1/{args.kind}{query}")["items"]
    if args.output == "json":
        _print_json({"apiVersion": "v1", "kind": "List", "items": items})
        return 0
    if not items:
        where = "" if args.namespace is None else f" in namespace {args.namespace}"
        print(f"No {args.kind} found{where}.")
        return 0
    all_ns = args.namespace is None
    if args.kind == "revisions":
        routes = client.call("GET", f"/v1/routes{query}")["items"]
        print(revisions_table(items, routes, all_namespaces=all_ns))
    else:
        print(_TABLES[args.kind](items, all_namespaces=all_ns))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    """Describe one service (its revisions, pods and events); -o json: the Service."""
    desc = AdminClient(args.state_dir).call("GET", _service_path(args.namespace, args.name))
    if args.output == "json":
        _print_json(desc["service"])
    else:
        print(describe_text(desc))
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """Change a service's env, traffic and tags in one request."""
    body = {
        "env": parse_env(args.env),
        "traffic": [t.to_json() for t in parse_traffic(args.traffic)],
        "tags": [t.to_json() for t in parse_tags(args.tag)],
        "untags": parse_untags(args.untag),
    }
    if not any(body.values()):
        raise CliError("service update: nothing to change: give --env, --traffic, --tag "
                       "or --untag")
    svc = AdminClient(args.state_dir).call("PATCH", _service_path(args.namespace, args.name),
                                           body, WRITE_TIMEOUT_S)
    status = svc.get("status", {})
    print(f"Service '{args.name}' updated in namespace '{args.namespace}'.")
    print(f"URL: {status.get('url', '')}")
    print(f"Latest revision: {status.get('latestCreatedRevisionName', '')}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete one service with its revisions, route and pods."""
    AdminClient(args.state_dir).call("DELETE", _service_path(args.namespace, args.name),
                                     timeout_s=WRITE_TIMEOUT_S)
    print(f"Service '{args.name}' deleted in namespace '{args.namespace}'.")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the service's pod log files; with --follow, keep printing until it is deleted."""
    client = AdminClient(args.state_dir)
    path = _service_path(args.namespace, args.name) + "/logs"
    container = "all" if args.all_containers else args.container
    query = {"revision": args.revision, "container": container}
    path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
    tailer = LogTailer()

    def refresh() -> bool:
        try:
            paths = client.call("GET", path)["paths"]
        except CliError as exc:
            if args.follow and exc.status == 404 and tailer.paths:
                return False  # the service went away: nothing more will be written
            raise
        for p in paths:
            tailer.add(p)
        return True

    refresh()
    _write(tailer.read_new(final=not args.follow))
    if not args.follow:
        return 0
    next_refresh = time.monotonic() + FOLLOW_REFRESH_S
    while True:
        time.sleep(FOLLOW_POLL_S)
        alive = True
        if time.monotonic() >= next_refresh:
            alive = refresh()
            next_refresh = time.monotonic() + FOLLOW_REFRESH_S
        _write(tailer.read_new(final=not alive))
        if not alive:
            return 0


def _write(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line)
    sys.stdout.flush()


# --- argument parsing ------------------------------------------------------------------

def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (0-65535; 0 picks a free one)")
    return int(value)


def _port_or_off(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (1-65535; 0 turns it off)")
    return int(value)


def _kind(value: str) -> str:
    if value not in KIND_ALIASES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a kind: one of services, revisions, routes, pods")
    return KIND_ALIASES[value]


def build_parser() -> argparse.ArgumentParser:
    """The `surge` argument parser with every subcommand."""
    # --state-dir works before or after the subcommand; SUPPRESS keeps the subcommand's
    # absent flag from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="state directory (default: $SURGE_STATE_DIR, else "
                             "$XDG_STATE_HOME/surge or ~/.local/state/surge)")
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("-n", "--namespace", default="default",
                       help="namespace of the service (default: default)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=["json"],
                        help="print Knative-shaped JSON instead of a table")

    parser = argparse.ArgumentParser(
        prog="surge", parents=[common],
        description="Run Knative Services locally: `surge up`, then apply manifests.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="run the stack in the foreground",
                        description="Run the ingress, control plane and autoscaler until "
                                    "Ctrl-C; state persists in the state directory.")
    up.add_argument("--port", type=_port, default=DEFAULT_PORT,
                    help=f"ingress port on 127.0.0.1 (default: {DEFAULT_PORT})")
    up.add_argument("--platform", choices=["local", "docker"], default="local",
                    help="run pods as local processes (default) or as container pairs on "
                         "the Docker engine")
    up.add_argument("--queue-proxy-image", metavar="IMAGE", default=None,
                    help="the sidecar image of Docker pods (default: surge-queue-proxy:dev)")
    up.set_defaults(func=cmd_up)

    kubeconfig = argparse.ArgumentParser(add_help=False)
    kubeconfig.add_argument("--kubeconfig", metavar="PATH", default=None,
                            help="kubeconfig of the cluster (default: the pod's service "
                                 "account in the cluster, else $KUBECONFIG)")
    kubeconfig.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                            help="least severe log lines written to stderr (default: info)")
    controller = sub.add_parser(
        "controller", parents=[kubeconfig], help="run the Kubernetes controller",
        description="Reconcile serving.knative.dev Services, Configurations, Revisions "
                    "and Routes into Deployments and Services until SIGTERM.")
    controller.add_argument("--watch-namespace", metavar="NS", default=None,
                            help="reconcile only this namespace (default: all)")
    controller.set_defaults(func=cmd_controller)

    autoscaler = sub.add_parser(
        "autoscaler", parents=[kubeconfig], help="run the Kubernetes autoscaler",
        description="Scrape revisions' pods found through EndpointSlices, take the "
                    "activator's pushed stats, and scale Deployments through their /scale "
                    "subresource until SIGTERM.")
    autoscaler.add_argument("--stats-port", type=_port, default=8080, metavar="N",
                            help="port of the stat server the activator pushes to "
                                 "(default: 8080)")
    autoscaler.add_argument("--metrics-port", type=_port_or_off, default=9090, metavar="N",
                            help="Prometheus /metrics port (default: 9090; 0 turns it off)")
    autoscaler.set_defaults(func=cmd_autoscaler)

    activator = sub.add_parser(
        "activator", parents=[kubeconfig], help="run the Kubernetes activator (ingress)",
        description="Route requests by Host from Route status to revisions' pods, holding "
                    "them for revisions at zero, until SIGTERM.")
    activator.add_argument("--port", type=_port, default=8080, metavar="N",
                           help="ingress port on all interfaces (default: 8080)")
    activator.add_argument("--autoscaler", metavar="URL",
                           default="ws://autoscaler.knative-serving.svc.cluster.local:8080",
                           help="the autoscaler's stat server websocket (default: "
                                "ws://autoscaler.knative-serving.svc.cluster.local:8080)")
    activator.add_argument("--metrics-port", type=_port_or_off, default=9090, metavar="N",
                           help="Prometheus /metrics port (default: 9090; 0 turns it off)")
    activator.set_defaults(func=cmd_activator)

    apply = sub.add_parser("apply", parents=[common], help="apply manifests",
                           description="Apply Service, Configuration, Route and ConfigMap "
                                       "manifests atomically; returns once they are routed.")
    apply.add_argument("-f", "--filename", action="extend", nargs="+", required=True,
                       metavar="FILE", help="YAML file(s) of one or more documents ('-': stdin)")
    apply.set_defaults(func=cmd_apply)

    get = sub.add_parser("get", parents=[common, output], help="list objects",
                         description="List services, revisions, routes or pods.")
    get.add_argument("kind", type=_kind, metavar="KIND",
                     help="services | revisions | routes | pods")
    get.add_argument("-n", "--namespace", default=None,
                     help="only this namespace (default: all namespaces)")
    get.set_defaults(func=cmd_get)

    describe = sub.add_parser("describe", parents=[common], help="show one object in detail")
    describe_sub = describe.add_subparsers(dest="kind", required=True, metavar="KIND")
    svc = describe_sub.add_parser("service", aliases=["svc", "ksvc"],
                                  parents=[common, named, output],
                                  help="a service, its revisions, pods and events")
    svc.add_argument("name", metavar="NAME")
    svc.set_defaults(func=cmd_describe)

    service = sub.add_parser("service", aliases=["svc", "ksvc"], parents=[common],
                             help="change a service")
    service_sub = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    update = service_sub.add_parser(
        "update", parents=[common, named], help="change env, traffic and tags",
        description="Change a service. --env makes a new revision; --traffic replaces the "
                    "whole split and must sum to 100.")
    update.add_argument("name", metavar="NAME")
    update.add_argument("--env", action="append", default=[], metavar="K=V",
                        help="set an environment variable (K- removes it); repeatable")
    update.add_argument("--traffic", action="append", default=[],
                        metavar="REV=PCT|@latest=PCT|TAG=PCT",
                        help="percent of traffic to a revision, the latest one or a tag; "
                             "repeatable, sums to 100")
    update.add_argument("--tag", action="append", default=[], metavar="REV=TAG",
                        help="give a revision (or @latest) a tag and its own URL; repeatable")
    update.add_argument("--untag", action="append", default=[], metavar="TAG",
                        help="remove a tag; repeatable")
    update.set_defaults(func=cmd_update)

    delete = sub.add_parser("delete", parents=[common], help="delete an object")
    delete_sub = delete.add_subparsers(dest="kind", required=True, metavar="KIND")
    delete_svc = delete_sub.add_parser("service", aliases=["svc", "ksvc"],
                                       parents=[common, named],
                                       help="a service with its revisions, route and pods")
    delete_svc.add_argument("name", metavar="NAME")
    delete_svc.set_defaults(func=cmd_delete)

    logs = sub.add_parser("logs", parents=[common, named], help="print a service's pod logs",
                          description="Print the log files of the service's pods: the app's "
                                      "output by default, the queue-proxy's with -c "
                                      "queue-proxy, both with --all-containers.")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("--revision", metavar="REV", help="only this revision's pods")
    logs.add_argument("-c", "--container", choices=["user-container", "queue-proxy"],
                      default="user-container",
                      help="whose log: the app's (default) or its queue-proxy's")
    logs.add_argument("--all-containers", action="store_true",
                      help="both logs of every pod, each line prefixed with its file")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new output until Ctrl-C or the service is deleted")
    logs.set_defaults(func=cmd_logs)
    return parser


def _report(exc: CliError) -> None:
    """One line on stderr: the message, then each problem as `object: path: reason`."""
    problems = ["".join(f"{p[k]}: " for k in ("object", "path") if p.get(k))
                + str(p.get("reason", "")) for p in exc.problems]
    line = f"surge: {exc}" + "".join(f": {p}" if i == 0 else f"; {p}"
                                     for i, p in enumerate(problems))
    print(" ".join(line.split("\n")), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `surge` command; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.state_dir = resolve_state_dir(getattr(args, "state_dir", None))
    try:
        return args.func(args)
    except CliError as exc:
        _report(exc)
        return 1
    except StateDirError as exc:
        _report(CliError(str(exc)))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `surge logs hello | head`: the reader left, not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
