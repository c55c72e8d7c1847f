"""The sidecar imports only what it runs on: its image is built from exactly that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# aiohttp cost the sidecar 11-15 MB of RSS; numpy is the autoscaler's alone.
NOT_IN_SIDECAR = ["aiohttp", "numpy", "yaml", "multidict", "yarl"]


def test_queue_proxy_main_loads_no_framework_or_numpy():
    probe = (
        "import json, sys\n"
        "import queue_proxy.__main__\n"
        f"print(json.dumps(sorted(n for n in {NOT_IN_SIDECAR!r} if n in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
