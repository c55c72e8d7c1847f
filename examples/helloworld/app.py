"""The Knative hello-world service in Python: GET / answers `Hello <TARGET>!`.

Listens on env PORT (default 8080), greets env TARGET (default "World"), logs one line
per request, and exits cleanly on SIGTERM (aiohttp's runner finishes in-flight requests).
"""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

log = logging.getLogger("helloworld")


async def hello(request: web.Request) -> web.Response:
    """Answer the greeting."""
    target = request.app["target"]
    return web.Response(text=f"Hello {target}!\n")


@web.middleware
async def access_log(request: web.Request, handler):
    """One line per request: method, path, status."""
    response = await handler(request)
    log.info("%s %s %s", request.method, request.path_qs, response.status)
    return response


def make_app(target: str) -> web.Application:
    """Build the application greeting `target`."""
    app = web.Application(middlewares=[access_log])
    app["target"] = target
    app.router.add_get("/", hello)
    return app


def main() -> int:
    """Serve until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="helloworld: %(message)s")
    port_text = os.environ.get("PORT", "8080")
    try:
        port = int(port_text)
    except ValueError:
        print(f"helloworld: PORT: {port_text!r} is not a port number", file=sys.stderr)
        return 2
    app = make_app(os.environ.get("TARGET", "World"))
    log.info("listening on port %d", port)
    # run_app installs SIGTERM/SIGINT handlers that stop the server gracefully.
    web.run_app(app, host="0.0.0.0", port=port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
