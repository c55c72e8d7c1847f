"""A stand-in for `surge up` in the orphan test: start one pod, print its pids, wait.

Usage: platform_parent.py STATE_DIR WORKING_DIR. The test SIGKILLs this process and
checks that the pod's processes die with it.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvloop

from dataplane.clock import MonotonicClock
from dataplane.types import RevisionKey
from serving.platform import LocalPlatform, PodTemplate


async def main(state_dir: str, working_dir: str) -> None:
    """Start the hello-world pod and sleep until killed."""
    platform = LocalPlatform(state_dir, MonotonicClock(), working_dir=working_dir)
    key = RevisionKey("default", "orphan-00001")
    await platform.ensure(key, PodTemplate(command=(sys.executable, "examples/helloworld/app.py")))
    await platform.scale(key, 1)
    pods = await platform.wait_pods(key, lambda ps: len(ps) == 1 and ps[0].ready)
    print(json.dumps({"app": pods[0].app_pid, "queue_proxy": pods[0].queue_proxy_pid}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2]))
