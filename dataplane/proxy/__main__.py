"""Run the engine as a plain reverse proxy to one upstream (benchmarks, RSS test).

    python -m dataplane.proxy --listen 127.0.0.1:8000 --upstream 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from .hooks import Forward
from .server import ProxyConfig, ProxyServer


class FixedUpstream:
    """A handler that forwards every request to one upstream."""

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def begin(self, head):  # noqa: D102
        return self.forward

    def finish(self, head, outcome) -> None:  # noqa: D102
        pass


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> None:
    server = ProxyServer(FixedUpstream(Forward(_address(args.upstream), timeout_s=args.timeout)))
    host, port = _address(args.listen)
    await server.start(host, port)
    print(f"listening on {host}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown(args.drain_timeout)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m dataplane.proxy")
    parser.add_argument("--listen", default="127.0.0.1:8000")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--timeout", type=float, default=None, help="total request timeout, seconds")
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        uvloop.run(_serve(args))
    except (OSError, ValueError) as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
