"""`python -m queue_proxy`: read the environment, run the daemon on uvloop, exit with a status.

Exit codes: 0 after a clean drain and shutdown, 2 for a bad environment (one line per
problem on stderr, `queue-proxy: NAME: value rule`), 1 when the daemon fails (a port in
use, a crash), 130 when interrupted before the daemon took over signals.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import uvloop

from dataplane.gctune import GcTuningError, gc_tuning_from_env

from .config import ConfigError, parse_queue_proxy_config
from .daemon import DaemonError, QueueProxyDaemon

_PREFIX = "queue-proxy: "
# SERVING_LOGGING_LEVEL uses zap's level names.
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "dpanic": logging.CRITICAL, "panic": logging.CRITICAL,
           "fatal": logging.CRITICAL}


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the queue-proxy configured by `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    try:
        config = parse_queue_proxy_config(environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(_PREFIX + problem, file=sys.stderr)
        return 2
    try:
        gc_tuning = gc_tuning_from_env(environ)
    except GcTuningError as exc:
        print(_PREFIX + str(exc), file=sys.stderr)
        return 2
    logging.basicConfig(level=_LEVELS.get(config.serving_logging_level, logging.INFO),
                        stream=sys.stderr, format="queue-proxy: %(levelname)s %(message)s")
    try:
        uvloop.run(QueueProxyDaemon(config, gc_tuning=gc_tuning).run())
    except DaemonError as exc:
        print(_PREFIX + str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the edge of the process: say what killed it
        logging.getLogger("queue_proxy").critical("queue-proxy failed", exc_info=exc)
        print(f"{_PREFIX}failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
