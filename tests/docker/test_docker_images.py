"""`make images` builds the three images from the host's wheelhouse; the sidecar is lean."""

from __future__ import annotations

import json

import pytest

from conftest import IMAGES

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(900)]

LEAN_CHECK = (
    "import importlib.util, json, sys\n"
    "import queue_proxy.__main__\n"
    "heavy = ['aiohttp', 'numpy', 'yaml', 'multidict', 'yarl']\n"
    "print(json.dumps({'loaded': sorted(n for n in heavy if n in sys.modules),\n"
    "  'installed': sorted(n for n in heavy + ['serving', 'activator', 'autoscaler', 'pip']\n"
    "                      if importlib.util.find_spec(n) is not None)}))\n"
)


async def _run_to_end(engine, image: str, entrypoint: list[str]) -> tuple[int, str]:
    cid = await engine.create(f"surge-test-{image.replace(':', '-')}-check",
                              {"Image": image, "Entrypoint": entrypoint,
                               "Labels": {"dev.surge.test": "images"}})
    try:
        await engine.start(cid)
        code = await engine.wait(cid)
        out = b"".join([chunk async for chunk in engine.logs(cid)]).decode()
    finally:
        await engine.remove(cid)
    return code, out


async def test_make_images_builds_the_three_images(images, engine):
    for ref in IMAGES:
        assert await engine.has_image(ref), f"{ref} missing after make images"


async def test_queue_proxy_image_runs_the_sidecar_as_non_root_on_knative_ports(images, engine):
    doc = await engine.inspect_image("surge-queue-proxy:dev")
    config = doc["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "queue_proxy"]
    assert set(config["ExposedPorts"]) == {"8012/tcp", "8022/tcp", "9090/tcp", "9091/tcp"}


async def test_queue_proxy_image_holds_only_what_the_sidecar_imports(images, engine):
    code, out = await _run_to_end(engine, "surge-queue-proxy:dev",
                                  ["/opt/venv/bin/python", "-c", LEAN_CHECK])
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1]) == {"loaded": [], "installed": []}


async def test_queue_proxy_image_reports_a_bad_environment_and_exits_2(images, engine):
    code, out = await _run_to_end(engine, "surge-queue-proxy:dev",
                                  ["/opt/venv/bin/python", "-m", "queue_proxy"])
    assert code == 2
    assert "queue-proxy: USER_PORT" in out


async def test_surge_image_entrypoint_is_the_cli(images, engine):
    doc = await engine.inspect_image("surge:dev")
    assert doc["Config"]["Entrypoint"] == ["/opt/venv/bin/surge"]
    code, out = await _run_to_end(engine, "surge:dev", ["/opt/venv/bin/surge", "up", "--help"])
    assert code == 0 and "--platform {local,docker}" in out
