"""The local platform's pure parts: names, environments, back-off, scale-down order, ports."""

from __future__ import annotations

import json
import re
import socket

import pytest

from dataplane.clock import FakeClock
from dataplane.types import PodAddress, RevisionKey
from queue_proxy.config import parse_queue_proxy_config
from serving.platform import (
    ImageOnlyError, LocalPlatform, PlatformError, PodInfo, PodPhase, PodTemplate, RestartBackoff,
)
from serving.platform.pod import (
    PodPorts, app_command, app_environment, choose_pods_to_remove, expand_vars, localize_probe,
    new_pod_name, queue_proxy_environment,
)
from serving.platform.ports import PortAllocator

KEY = RevisionKey("default", "hello-00001")
PORTS = PodPorts(serving=41001, stats=41002, admin=41003, metrics=41004, user=41005)
TEMPLATE = PodTemplate(
    command=("python", "app.py"), args=("--greeting=$(GREETING)",),
    env={"GREETING": "hi", "PORT": "1", "K_REVISION": "mine"},
    container_concurrency=10, timeout_s=60.0, response_start_timeout_s=9.5,
    service="hello", configuration="hello",
)

EXPANSIONS = [
    pytest.param("--port=$(PORT)", "--port=8080", id="defined-var"),
    pytest.param("$(NOPE)", "$(NOPE)", id="undefined-var-stays"),
    pytest.param("$$(PORT)", "$(PORT)", id="double-dollar-escapes"),
    pytest.param("cost: $5 $", "cost: $5 $", id="lone-dollars-stay"),
    pytest.param("$(PORT", "$(PORT", id="unclosed-paren-stays"),
    pytest.param("$(PORT)$(PORT)", "80808080", id="adjacent"),
    pytest.param("$$$(PORT)", "$8080", id="escape-then-var"),
]


@pytest.mark.parametrize(("text", "want"), EXPANSIONS)
def test_expand_vars_follows_kubernetes(text, want):
    assert expand_vars(text, {"PORT": "8080"}) == want


def test_app_command_expands_args_with_container_env():
    assert app_command(TEMPLATE, KEY, 41005) == ["python", "app.py", "--greeting=hi"]


INTERPRETERS = [
    pytest.param(("python", "app.py"), ["/venv/bin/python", "app.py"], id="python"),
    pytest.param(("python3", "-u", "app.py"), ["/venv/bin/python", "-u", "app.py"], id="python3"),
    pytest.param(("/usr/bin/python3", "app.py"), ["/usr/bin/python3", "app.py"], id="a-path-stays"),
    pytest.param(("python3.9", "app.py"), ["python3.9", "app.py"], id="a-versioned-name-stays"),
    pytest.param(("node", "python"), ["node", "python"], id="only-the-program-name"),
]


@pytest.mark.parametrize(("command", "want"), INTERPRETERS)
def test_app_command_runs_bare_python_with_surges_interpreter(command, want):
    template = PodTemplate(command=command, service="hello", configuration="hello")
    assert app_command(template, KEY, 41005, python="/venv/bin/python") == want


def test_app_environment_puts_knative_names_over_the_users():
    env = app_environment({"PATH": "/bin", "QUEUE_SERVING_PORT": "1", "HOME": "/h"}, TEMPLATE, KEY, 41005)
    assert env == {
        "PATH": "/bin", "HOME": "/h", "PYTHONUNBUFFERED": "1", "GREETING": "hi", "PORT": "41005",
        "K_SERVICE": "hello", "K_CONFIGURATION": "hello", "K_REVISION": "hello-00001",
    }


def test_queue_proxy_environment_parses_as_the_queue_proxy_reads_it():
    env = queue_proxy_environment({"PATH": "/bin", "SERVING_READINESS_PROBE": "junk"}, TEMPLATE, KEY,
                                  "hello-00001-abcde", PORTS, drain_quiet_s=2.0, pythonpath="/src")
    config = parse_queue_proxy_config(env)
    assert (config.container_concurrency, config.queue_serving_port, config.user_port) == (10, 41001, 41005)
    assert (config.queue_stats_port, config.queue_admin_port, config.queue_metrics_port) == (41002, 41003, 41004)
    assert (config.revision_timeout_s, config.revision_response_start_timeout_s) == (60.0, 10.0)
    assert config.revision_idle_timeout_s is None
    assert (config.serving_namespace, config.serving_service, config.serving_configuration) == \
        ("default", "hello", "hello")
    assert (config.serving_revision, config.serving_pod, config.serving_pod_ip) == \
        ("hello-00001", "hello-00001-abcde", "127.0.0.1")
    assert (config.drain_quiet_s, config.queue_admin_address) == (2.0, "127.0.0.1")
    # The inherited junk probe is dropped: absent means a TCP probe of the user port.
    assert [(p.kind, p.port) for p in config.readiness_probes] == [("tcp", 41005)]
    assert env["PYTHONPATH"] == "/src" and env["PATH"] == "/bin"


PROBES = [
    pytest.param('{"httpGet": {"path": "/healthz", "port": 8080}}',
                 {"httpGet": {"path": "/healthz", "port": 41005}}, id="http-port-rewritten"),
    pytest.param('[{"tcpSocket": {}}, {"httpGet": {"path": "/"}}]',
                 [{"tcpSocket": {"port": 41005}}, {"httpGet": {"path": "/", "port": 41005}}], id="list"),
    pytest.param('{"exec": {"command": ["true"]}}', {"exec": {"command": ["true"]}}, id="exec-untouched"),
]


@pytest.mark.parametrize(("raw", "want"), PROBES)
def test_localize_probe_points_at_the_user_port(raw, want):
    assert json.loads(localize_probe(raw, 41005)) == want


def test_localize_probe_passes_bad_json_on_for_the_queue_proxy_to_reject():
    assert localize_probe("{not json", 41005) == "{not json"
    assert localize_probe(None, 41005) is None


def test_new_pod_name_is_revision_dash_five_lowercase_alnum_and_unique():
    taken = {new_pod_name("hello-00001", ()) for _ in range(50)}
    assert all(re.fullmatch(r"hello-00001-[a-z0-9]{5}", n) for n in taken)
    assert new_pod_name("hello-00001", taken) not in taken


BACKOFF_STEPS = [
    # (ready seconds before the crash, crashes in a row after it, delay)
    pytest.param([(None, 1, 1.0), (None, 2, 2.0), (None, 3, 4.0), (None, 4, 8.0), (None, 5, 16.0),
                  (None, 6, 30.0), (None, 7, 30.0)], id="doubles-to-cap"),
    pytest.param([(None, 1, 1.0), (5.0, 2, 2.0), (59.9, 3, 4.0), (60.0, 1, 1.0)],
                 id="resets-after-twice-cap-ready"),
]


@pytest.mark.parametrize("steps", BACKOFF_STEPS)
def test_restart_backoff_over_crashes(steps):
    backoff, crashes = RestartBackoff(), 0
    for ready_for, want_crashes, want_delay in steps:
        crashes = backoff.consecutive(crashes, ready_for)
        assert (crashes, backoff.delay(crashes)) == (want_crashes, want_delay), f"ready {ready_for}"


def _pod(name, phase, ready, started_at, ready_since=None, restarts=0):
    return PodInfo(
        name=name, revision=KEY, phase=phase, ready=ready, address=PodAddress("127.0.0.1", 1, 2),
        admin_port=3, metrics_port=4, user_port=5, app_pid=None, queue_proxy_pid=None,
        started_at=started_at, restarts=restarts, last_exit=None, log_path="x", queue_proxy_log_path="y",
        ready_since=ready_since,
    )


OLD = _pod("old", PodPhase.RUNNING, True, 1000.0, ready_since=1010.0)
NEW = _pod("new", PodPhase.RUNNING, True, 1040.0, ready_since=1050.0)
PENDING = _pod("pending", PodPhase.PENDING, False, 1060.0)
FAILED = _pod("failed", PodPhase.FAILED, False, 1005.0, restarts=2)
UNREADY = _pod("unready", PodPhase.RUNNING, False, 1001.0)
FLAKY = _pod("flaky", PodPhase.RUNNING, True, 1000.0, ready_since=1010.0, restarts=3)

VICTIMS = [
    pytest.param([OLD, NEW, PENDING], 2, ["pending", "new"], id="not-ready-then-newest"),
    pytest.param([OLD, NEW, FAILED, PENDING], 1, ["failed"], id="failed-before-pending"),
    pytest.param([OLD, UNREADY, PENDING], 2, ["pending", "unready"], id="pending-before-unready-running"),
    pytest.param([OLD, FLAKY, NEW], 1, ["flaky"], id="restarts-before-age"),
    pytest.param([OLD, NEW], 0, [], id="none"),
    pytest.param([OLD], 3, ["old"], id="more-than-there-are"),
]


@pytest.mark.parametrize(("pods", "count", "want"), VICTIMS)
def test_choose_pods_to_remove_ranks_like_a_replicaset(pods, count, want):
    assert choose_pods_to_remove(pods, count) == want


async def test_image_only_container_is_rejected_with_what_to_add(tmp_path, clock: FakeClock):
    platform = LocalPlatform(tmp_path, clock)
    template = PodTemplate(command=(), image="gcr.io/knative-samples/helloworld-go")
    with pytest.raises(ImageOnlyError) as err:
        await platform.ensure(KEY, template)
    message = str(err.value)
    assert "gcr.io/knative-samples/helloworld-go" in message
    assert "add `command` (and `args`)" in message and "$PORT" in message
    assert platform.pods(KEY) == () and platform.stats().revisions == 0


async def test_scale_of_an_unknown_revision_is_an_error(tmp_path, clock: FakeClock):
    platform = LocalPlatform(tmp_path, clock)
    with pytest.raises(PlatformError, match="unknown to the local platform"):
        await platform.scale(KEY, 1)


def test_port_allocator_hands_out_distinct_ports_until_released():
    allocator = PortAllocator()
    ports = allocator.allocate(20)
    assert len(set(ports)) == 20 and allocator.reserved == frozenset(ports)
    allocator.release(ports[:10])
    assert allocator.reserved == frozenset(ports[10:])
    for port in ports[:10]:  # released ports are really free
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_port_allocator_skips_a_port_the_kernel_offers_again():
    offers = [41001, 41001, 41001, 41002]
    allocator = PortAllocator(ask_kernel=lambda host: offers.pop(0))
    assert allocator.allocate(1) == (41001,)
    assert allocator.allocate(1) == (41002,)
    assert offers == []


def test_port_allocator_gives_up_loudly_when_every_offer_is_taken():
    allocator = PortAllocator(ask_kernel=lambda host: 41001)
    allocator.reserve(41001)
    with pytest.raises(PlatformError, match="no free port"):
        allocator.allocate(1)
