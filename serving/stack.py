"""`surge up`: the whole local stack in one asyncio process on uvloop.

Wiring (every long-lived task in one TaskGroup):

    Store (SQLite) ──load──► ServingState ──► Controller ◄── admin API (aiohttp, 127.0.0.1:0)
                                                │ reconcile
                 LocalPlatform ◄── Autoscaling ─┤ (Multiscaler + PodScraper, apply_decision)
                   │ pods listener, removal hook│
                   └──────────► Controller ─────┴──► Activator (ingress, 127.0.0.1:PORT)
    Activator ── StatSink ──► Multiscaler.ingest (cold-start pokes, held load)

Start-up: open the store, load the state (a restart brings every service back with its
revisions and traffic), start the activator on the ingress port, reconcile (revisions
ensured, routes programmed), serve the admin API, then write admin.json so `surge`
commands find the stack. Shutdown on SIGINT/SIGTERM: stop the admin API, drain the
activator (health probes fail, new connections refused, requests in flight finish,
bounded), stop the autoscaler, drain and stop every pod, remove admin.json, exit 0.
If the stack dies any other way, pods die with it (the platform's process groups).

It prints what it does, one line each, for people: services ready with their URLs,
pods started/ready/stopped, scaling decisions, config changes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from activator import LEGACY_COUNTERS, Activator, ActivatorConfig, RevisionNamesFn
from autoscaler import AutoscalerMetrics, PodScraper
from dataplane import MonotonicClock, RevisionKey

from .admin import build_admin_app
from .autoscaling import Autoscaling
from .controller import Controller
from .platform import LocalPlatform, Platform, PlatformError
from .state import ServingState, state_from_dict
from .statedir import ensure_state_dir, new_admin_token, remove_admin_file, write_admin_file
from .store import Store

__all__ = ["run", "serve"]

_log = logging.getLogger(__name__)

# Requests in flight get this long to finish when the stack stops.
SHUTDOWN_TIMEOUT_S = 10.0


def _say(line: str) -> None:
    print(line, flush=True)


def run(*, port: int, state_dir: Path, drain_quiet_s: float = 2.0, platform: str = "local",
        queue_proxy_image: str | None = None) -> int:
    """Run the stack in the foreground until SIGINT/SIGTERM; the exit status."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="surge: %(levelname)s %(name)s: %(message)s")
    try:
        return uvloop.run(serve(port=port, state_dir=Path(state_dir),
                                drain_quiet_s=drain_quiet_s, platform=platform,
                                queue_proxy_image=queue_proxy_image))
    except (OSError, PlatformError) as exc:  # a port taken, no Docker engine, no image
        print(f"surge: cannot start the stack: {exc}", file=sys.stderr)
        return 1


async def _open_platform(kind: str, state_dir: Path, clock: MonotonicClock, drain_quiet_s: float,
                         queue_proxy_image: str | None) -> Platform:
    """The pods' platform: local processes, or container pairs on the Docker engine."""
    if kind == "docker":
        from .platform.docker import DockerPlatform  # only `--platform docker` needs it
        image = {"queue_proxy_image": queue_proxy_image} if queue_proxy_image else {}
        return await DockerPlatform.open(state_dir, clock, drain_quiet_s=drain_quiet_s, **image)
    return LocalPlatform(state_dir, clock, drain_quiet_s=drain_quiet_s)


async def serve(*, port: int, state_dir: Path, drain_quiet_s: float = 2.0,
                stop: asyncio.Event | None = None, platform: str = "local",
                queue_proxy_image: str | None = None) -> int:
    """The stack's life on the running loop; returns 0 after a clean stop."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ensure_state_dir(state_dir)
    clock = MonotonicClock()
    store = Store.in_state_dir(state_dir)
    try:
        snapshot = await asyncio.to_thread(store.load)
        state = ServingState() if snapshot is None else state_from_dict(snapshot)
        pods = await _open_platform(platform, state_dir, clock, drain_quiet_s, queue_proxy_image)
        try:
            async with aiohttp.ClientSession() as session:
                return await _serve(port, state_dir, state, store, pods, clock, session,
                                    stop)
        finally:
            pods.kill_all()  # type: ignore[attr-defined]  # only acts if something failed
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        remove_admin_file(state_dir)
        store.close()


async def _serve(port: int, state_dir: Path, state: ServingState, store: Store,
                 platform: Platform, clock: MonotonicClock,
                 session: aiohttp.ClientSession, stop: asyncio.Event) -> int:
    controller: Controller | None = None

    def event(kind: str, key: object, message: str) -> None:
        if controller is not None:
            controller.revision_event(kind, key, message)  # type: ignore[arg-type]

    autoscaling = Autoscaling(clock=clock, platform=platform, endpoints=_NoEndpoints(),
                              scraper=PodScraper(session), on_event=event)
    activator = Activator(clock, autoscaling.stat_sink,
                          config=ActivatorConfig(shutdown_timeout_s=SHUTDOWN_TIMEOUT_S))
    autoscaling.set_endpoints_sink(activator)
    controller = Controller(state=state, store=store, platform=platform, activator=activator,
                            autoscaling=autoscaling, state_dir=state_dir, printer=_say)
    platform.subscribe(controller.on_pods)
    platform.set_pod_removal_hook(controller.before_pod_removal)

    await activator.start("127.0.0.1", port)
    metrics = CollectorRegistry()
    AutoscalerMetrics(autoscaling.multiscaler, metrics)
    activator.metrics_collector(metrics, names=_revision_names(autoscaling))
    runner = web.AppRunner(build_admin_app(controller, token=(token := new_admin_token()),
                                           metrics=metrics, legacy_counters=LEGACY_COUNTERS),
                           access_log=None, handle_signals=False)
    await runner.setup()
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(autoscaling.run(), name="autoscaling"),
                     tg.create_task(controller.run(), name="controller-events")]
            await controller.start()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))  # a free port, known before anyone can connect
            admin_port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
            write_admin_file(state_dir, port=admin_port, token=token)
            _say(f"surge: ingress on http://127.0.0.1:{activator.port}, admin API on "
                 f"127.0.0.1:{admin_port}, state in {state_dir}")
            _say("surge: ready; Ctrl-C stops the stack")
            await stop.wait()
            _say("surge: stopping: draining requests in flight, then the pods")
            remove_admin_file(state_dir)
            await runner.cleanup()
            await activator.aclose()
            for task in tasks:
                task.cancel()
        await platform.aclose()
        controller.flush_events()
    except BaseException:
        # Something failed (or we were cancelled): stop serving before the pods go.
        await runner.cleanup()
        await activator.aclose()
        raise
    _say("surge: stopped")
    return 0


def _revision_names(autoscaling: Autoscaling) -> RevisionNamesFn:
    """A revision's Service and Configuration names, from the plan it is scaled by."""
    def names(key: RevisionKey) -> tuple[str, str]:
        scale = autoscaling.scale_of(key)
        return ("", "") if scale is None else (scale.plan.service, scale.plan.configuration)
    return names


class _NoEndpoints:
    """Stands in until the activator exists (nothing is watched before then)."""

    def set_revision(self, endpoints: object) -> None:
        """Nothing to program yet."""

    def remove_revision(self, key: object) -> None:
        """Nothing to forget yet."""
