"""A catch-all aiohttp app on a free loopback port, for stand-in pods and upstreams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


async def serve_loopback(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> tuple[web.AppRunner, int]:
    """Serve `handler` for every method and path on 127.0.0.1; (runner, port)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
