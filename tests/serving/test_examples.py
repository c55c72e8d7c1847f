"""The manifests under examples/ parse, validate and give the revisions, traffic and URLs
their comments and examples/README.md promise (control plane only, no running stack).

Each scenario applies its files in order, as a person following examples/README.md
would; after each step the revisions it creates turn ready (as their first pod would),
and the routing table is what the activator would be told.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autoscaler import resolve_scale_bounds, resolve_spec, resolve_windows
from dataplane.types import RevisionKey
from serving.manifests import parse_manifests
from serving.model import ObjectKey, Service
from serving.state import (
    ServingState, apply, mark_revision_ready, routing_table, service_status,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Step:
    """Apply `file`; expect `created`; then, once they are ready, `hosts` and `traffic`."""

    file: str
    created: tuple[str, ...] = ()
    # host -> ((revision, percent), ...) while the created revisions are still starting
    starting: dict[str, tuple[tuple[str, int], ...]] | None = None
    hosts: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    # (tag, revision, percent) of status.traffic, in order
    traffic: tuple[tuple[str, str, int], ...] = ()


def _one(rev: str) -> tuple[tuple[str, int], ...]:
    return ((rev, 100),)


HW = "helloworld-python.default.example.com"
BG = "blue-green-demo.default.example.com"
HELLO = "hello.default.example.com"

SCENARIOS = [
    pytest.param("helloworld-python", [
        Step("basic/service.yaml", ("helloworld-python-00001",),
             hosts={HW: _one("helloworld-python-00001")},
             traffic=(("", "helloworld-python-00001", 100),)),
    ], id="basic"),
    pytest.param("helloworld-python", [
        Step("helloworld/service.yaml", ("helloworld-python-00001",),
             hosts={HW: _one("helloworld-python-00001")},
             traffic=(("", "helloworld-python-00001", 100),)),
    ], id="helloworld-seed"),
    pytest.param("helloworld-python", [
        Step("basic/service.yaml", ("helloworld-python-00001",),
             hosts={HW: _one("helloworld-python-00001")}),
        # v1 is the basic service: applying it over the basic one changes nothing.
        Step("update/v1.yaml", (), hosts={HW: _one("helloworld-python-00001")},
             traffic=(("", "helloworld-python-00001", 100),)),
        Step("update/v2.yaml", ("helloworld-python-00002",),
             starting={HW: _one("helloworld-python-00001")},
             hosts={HW: _one("helloworld-python-00002")},
             traffic=(("", "helloworld-python-00002", 100),)),
    ], id="update-v1-to-v2"),
    pytest.param("blue-green-demo", [
        Step("blue-green/1-blue.yaml", ("blue-green-demo-blue",),
             hosts={BG: _one("blue-green-demo-blue"),
                    "blue-" + BG: _one("blue-green-demo-blue")},
             traffic=(("blue", "blue-green-demo-blue", 100),)),
        Step("blue-green/2-green.yaml", ("blue-green-demo-green",),
             starting={BG: _one("blue-green-demo-blue"),
                       "blue-" + BG: _one("blue-green-demo-blue")},
             hosts={BG: _one("blue-green-demo-blue"),
                    "blue-" + BG: _one("blue-green-demo-blue"),
                    "green-" + BG: _one("blue-green-demo-green")},
             traffic=(("blue", "blue-green-demo-blue", 100),
                      ("green", "blue-green-demo-green", 0))),
        Step("blue-green/3-flip.yaml", (),
             hosts={BG: _one("blue-green-demo-green"),
                    "blue-" + BG: _one("blue-green-demo-blue"),
                    "green-" + BG: _one("blue-green-demo-green")},
             traffic=(("blue", "blue-green-demo-blue", 0),
                      ("green", "blue-green-demo-green", 100))),
        # Rolling back is applying step 2 again.
        Step("blue-green/2-green.yaml", (),
             hosts={BG: _one("blue-green-demo-blue"),
                    "blue-" + BG: _one("blue-green-demo-blue"),
                    "green-" + BG: _one("blue-green-demo-green")}),
    ], id="blue-green-then-flip-and-back"),
    pytest.param("hello", [
        Step("canary/1-stable.yaml", ("hello-00001",), hosts={HELLO: _one("hello-00001")},
             traffic=(("", "hello-00001", 100),)),
        Step("canary/2-canary.yaml", ("hello-00002",),
             # latestRevision follows the latest *ready* revision: hello-00001 for now.
             starting={HELLO: _one("hello-00001"), "current-" + HELLO: _one("hello-00001"),
                       "candidate-" + HELLO: _one("hello-00001")},
             hosts={HELLO: (("hello-00001", 80), ("hello-00002", 20)),
                    "current-" + HELLO: _one("hello-00001"),
                    "candidate-" + HELLO: _one("hello-00002")},
             traffic=(("current", "hello-00001", 80), ("candidate", "hello-00002", 20))),
        Step("canary/3-promote.yaml", (),
             hosts={HELLO: _one("hello-00002"),
                    "current-" + HELLO: _one("hello-00001"),
                    "candidate-" + HELLO: _one("hello-00002")},
             traffic=(("current", "hello-00001", 0), ("candidate", "hello-00002", 100))),
    ], id="canary-80-20-then-promote"),
    pytest.param("helloworld", [
        Step("docker/helloworld.yaml", ("helloworld-00001",),
             hosts={"helloworld.default.example.com": _one("helloworld-00001")},
             traffic=(("", "helloworld-00001", 100),)),
    ], id="docker-helloworld"),
    pytest.param("autoscale-python", [
        Step("autoscaling/service.yaml", ("autoscale-python-00001",),
             hosts={"autoscale-python.default.example.com": _one("autoscale-python-00001")},
             traffic=(("", "autoscale-python-00001", 100),)),
    ], id="autoscaling"),
    pytest.param("hello-zero", [
        Step("scale-to-zero/config-autoscaler.yaml"),
        Step("scale-to-zero/service.yaml", ("hello-zero-00001",),
             hosts={"hello-zero.default.example.com": _one("hello-zero-00001")},
             traffic=(("", "hello-zero-00001", 100),)),
        # The shipped ConfigMap restores the defaults without touching the service.
        Step("config-autoscaler.yaml",
             hosts={"hello-zero.default.example.com": _one("hello-zero-00001")}),
    ], id="scale-to-zero"),
]


def _load(rel: str):
    return parse_manifests((EXAMPLES / rel).read_text(encoding="utf-8"))


def _hosts(state: ServingState) -> dict[str, tuple[tuple[str, int], ...]]:
    return {h.host: tuple((k.name, pct) for k, pct in h.splits) for h in routing_table(state)}


@pytest.mark.parametrize(("service", "steps"), SCENARIOS)
def test_scenario_gives_the_documented_revisions_and_routes(service, steps):
    state = ServingState()
    for step in steps:
        parsed = _load(step.file)
        assert parsed.warnings == (), step.file
        result = apply(state, parsed.objects, now=NOW)
        assert tuple(k.name for k in result.created_revisions) == step.created, step.file
        state = result.state
        if step.starting is not None:
            assert _hosts(state) == step.starting, f"{step.file} while starting"
        for key in result.created_revisions:
            state = mark_revision_ready(state, key, True)
        assert _hosts(state) == step.hosts, step.file
        if step.traffic:
            status = service_status(state, ObjectKey("default", service))
            got = tuple((t.tag, t.revision_name, t.percent) for t in status.traffic)
            assert got == step.traffic, step.file
            assert status.url == f"http://{service}.default.example.com"
            for t in status.traffic:
                want = f"http://{t.tag}-{service}.default.example.com" if t.tag else ""
                assert t.url == want, step.file
            assert [c.status for c in status.conditions] == ["True"] * 3, step.file


def test_every_example_manifest_is_in_a_scenario():
    covered = {step.file for p in SCENARIOS for step in p.values[1]}
    files = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml")}
    assert files == covered


EVERY_FILE = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml"))


@pytest.mark.parametrize("rel", EVERY_FILE)
def test_each_file_applies_alone_on_an_empty_stack(rel):
    result = apply(ServingState(), _load(rel).objects, now=NOW)
    assert result.changes and all(c.action == "created" for c in result.changes)


# docker/ holds manifests for the Docker platform, whose command runs inside the image.
LOCAL_SERVICES = [r for r in EVERY_FILE
                  if "config-autoscaler" not in r and not r.startswith("docker/")]


@pytest.mark.parametrize("rel", LOCAL_SERVICES)
def test_each_service_runs_the_hello_world_app_locally_and_keeps_its_image(rel):
    (svc,) = _load(rel).objects
    assert isinstance(svc, Service)
    container = svc.template.spec.container
    assert container.image.endswith("/helloworld-python")
    assert container.command[0] == "python"
    assert (ROOT / container.command[1]).is_file()
    assert container.env_dict()["TARGET"]


def _state_after(*files: str) -> ServingState:
    state = ServingState()
    for rel in files:
        state = apply(state, _load(rel).objects, now=NOW).state
    return state


def _revision(state: ServingState, name: str):
    return state.revisions[RevisionKey("default", name)]


def test_autoscaling_example_aims_for_seven_per_pod_between_one_and_a_hundred_pods():
    state = _state_after("autoscaling/service.yaml")
    rev = _revision(state, "autoscale-python-00001")
    spec = resolve_spec(state.autoscaler, rev.annotations,
                        container_concurrency=rev.spec.container_concurrency)
    assert rev.spec.container_concurrency == 10
    assert (spec.metric, spec.total_value, spec.target_value) == ("concurrency", 10, 7)
    assert resolve_scale_bounds(state.autoscaler, rev.annotations) == (1, 100)


def test_scale_to_zero_example_shortens_windows_and_the_shipped_configmap_restores_them():
    state = _state_after("scale-to-zero/config-autoscaler.yaml", "scale-to-zero/service.yaml")
    rev = _revision(state, "hello-zero-00001")
    assert resolve_scale_bounds(state.autoscaler, rev.annotations) == (0, 0)
    assert resolve_windows(state.autoscaler, rev.annotations) == (6, 1)
    assert state.autoscaler.scale_to_zero_grace_period == 6
    assert state.autoscaler.enable_scale_to_zero
    restored = apply(state, _load("config-autoscaler.yaml").objects, now=NOW).state
    assert resolve_windows(restored.autoscaler, rev.annotations) == (60, 6)
    assert restored.autoscaler.scale_to_zero_grace_period == 30
