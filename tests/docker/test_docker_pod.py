"""The pure parts of a Docker pod: container specs, labels, names and the stack's id."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from dataplane.types import RevisionKey
from serving.platform import PodTemplate
from serving.platform.docker_pod import (
    HostPorts, app_container_spec, container_name, load_stack_id, pod_labels,
    queue_proxy_container_spec,
)

KEY = RevisionKey("default", "hello-00001")


def _template(**overrides) -> PodTemplate:
    fields = dict(command=(), image="example/hello:1", env=MappingProxyType({"TARGET": "x"}),
                  service="hello", configuration="hello", container_concurrency=2)
    fields.update(overrides)
    return PodTemplate(**fields)


APP_CASES = [
    # (command, args, expected Entrypoint, expected Cmd); None: the key is absent
    pytest.param((), (), None, None, id="image-entrypoint-and-cmd-kept"),
    pytest.param(("python", "app.py"), (), ["python", "app.py"], None,
                 id="command-replaces-entrypoint-drops-cmd"),
    pytest.param((), ("--port=$(PORT)",), None, ["--port=8080"], id="args-replace-cmd-expanded"),
    pytest.param(("srv",), ("$(TARGET)", "$$(PORT)", "$(NOPE)"), ["srv"], ["x", "$(PORT)", "$(NOPE)"],
                 id="kubernetes-var-expansion"),
]


@pytest.mark.parametrize(("command", "args", "entrypoint", "cmd"), APP_CASES)
def test_app_container_follows_kubernetes_command_rules(command, args, entrypoint, cmd):
    spec = app_container_spec(_template(command=command, args=args), KEY, "qp123", {"l": "v"})
    assert spec.get("Entrypoint") == entrypoint
    assert spec.get("Cmd") == cmd
    assert spec["Image"] == "example/hello:1"
    assert spec["HostConfig"] == {"NetworkMode": "container:qp123"}
    assert spec["Labels"] == {"l": "v"}


ENV_CASES = [
    pytest.param(None, "8080", id="knative-default-port"),
    pytest.param(9000, "9000", id="pinned-user-port"),
]


@pytest.mark.parametrize(("user_port", "port"), ENV_CASES)
def test_app_env_has_port_and_k_names_over_the_users(user_port, port):
    env = MappingProxyType({"TARGET": "x", "PORT": "1", "K_REVISION": "spoofed"})
    spec = app_container_spec(_template(env=env, user_port=user_port), KEY, "qp", {})
    got = dict(item.split("=", 1) for item in spec["Env"])
    assert got == {"TARGET": "x", "PORT": port, "K_SERVICE": "hello",
                   "K_CONFIGURATION": "hello", "K_REVISION": "hello-00001"}


def test_app_without_image_is_refused():
    with pytest.raises(ValueError, match="no image"):
        app_container_spec(_template(image=None, command=("python",)), KEY, "qp", {})


def test_queue_proxy_publishes_knative_ports_on_loopback_only():
    spec = queue_proxy_container_spec("surge-queue-proxy:dev", _template(), KEY, "hello-00001-abcde",
                                      HostPorts(40001, 40002, 40003), {"l": "v"}, drain_quiet_s=2.0)
    bindings = spec["HostConfig"]["PortBindings"]
    assert bindings == {
        "8012/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}],
        "9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40002"}],
        "9091/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40003"}],
    }
    env = dict(item.split("=", 1) for item in spec["Env"])
    assert env["QUEUE_SERVING_PORT"] == "8012" and env["USER_PORT"] == "8080"
    assert env["CONTAINER_CONCURRENCY"] == "2" and env["SERVING_POD"] == "hello-00001-abcde"
    assert env["QUEUE_DRAIN_QUIET_SECONDS"] == "2"
    # Not loopback: the sidecar must listen on the pod's interface for the published ports.
    assert env["SERVING_POD_IP"] == "0.0.0.0"
    assert "PATH" not in env  # nothing of the stack's own environment leaks into a pod


def test_labels_name_stack_service_revision_pod_and_role(tmp_path):
    labels = pod_labels("0123456789abcdef", tmp_path, KEY, _template(), "hello-00001-abcde", "app")
    assert labels == {
        "dev.surge.stack": "0123456789abcdef", "dev.surge.state-dir": str(tmp_path),
        "dev.surge.namespace": "default", "dev.surge.service": "hello",
        "dev.surge.configuration": "hello", "dev.surge.revision": "hello-00001",
        "dev.surge.pod": "hello-00001-abcde", "dev.surge.role": "app",
    }
    assert container_name("0123456789abcdef", "hello-00001-abcde", "app") == \
        "surge-012345-hello-00001-abcde-app"


def test_stack_id_is_made_once_and_kept(tmp_path: Path):
    first = load_stack_id(tmp_path)
    assert len(first) == 16 and int(first, 16) >= 0
    assert load_stack_id(tmp_path) == first
    other = tmp_path / "other"
    other.mkdir()
    assert load_stack_id(other) != first  # another state directory is another stack


def test_stack_id_file_that_is_not_an_id_is_replaced(tmp_path: Path):
    (tmp_path / "docker-stack-id").write_text("garbage\n")
    new = load_stack_id(tmp_path)
    assert new != "garbage" and load_stack_id(tmp_path) == new
