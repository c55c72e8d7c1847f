"""aiohttp apps on a free loopback port, for stand-in pods, upstreams and admin APIs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def start_app(app: web.Application, *,
                    shutdown_timeout: float = 60.0) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1 at a free port; (runner, port). Clean up the runner."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def catch_all(handler: Handler) -> web.Application:
    """An app sending every method and path to `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def serve_loopback(handler: Handler) -> tuple[web.AppRunner, int]:
    """Serve `handler` for every method and path on 127.0.0.1; (runner, port)."""
    return await start_app(catch_all(handler))


@contextlib.asynccontextmanager
async def serving(app: web.Application, *, shutdown_timeout: float = 60.0
                  ) -> AsyncIterator[int]:
    """`app` on a free loopback port for the block; yields the port."""
    runner, port = await start_app(app, shutdown_timeout=shutdown_timeout)
    try:
        yield port
    finally:
        await runner.cleanup()
