"""The `surge` CLI in-process against a real admin app on loopback with a fake controller."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import types
from pathlib import Path

import pytest
import pytest_asyncio

from admin_fakes import HELLO, FakeController, serve_admin
from serving import cli
from serving.admin import TagSpec, TrafficSpec
from serving.cli import CliError, main, parse_env, parse_tags, parse_traffic, parse_untags
from serving.cli_format import LogTailer, services_table
from serving.statedir import StateDirLock, write_admin_file

TOKEN = "t0ken"


class Harness:
    """A state directory whose admin.json points at a live admin app over a fake."""

    def __init__(self, state_dir: Path, controller: FakeController, capsys) -> None:
        self.state_dir, self.controller, self._capsys = state_dir, controller, capsys

    async def run(self, *argv: str) -> tuple[int, str, str]:
        """`surge ARGV --state-dir DIR` in a thread (it blocks on urllib); (rc, out, err)."""
        async with asyncio.timeout(20):
            rc = await asyncio.to_thread(main, [*argv, "--state-dir", str(self.state_dir)])
        out, err = self._capsys.readouterr()
        return rc, out, err

    async def apply_hello(self) -> None:
        await self.controller.apply([("hello.yaml", HELLO)])


@pytest_asyncio.fixture
async def surge(tmp_path, capsys):
    controller = FakeController()
    async with serve_admin(controller, token=TOKEN) as port:
        write_admin_file(tmp_path, port=port, token=TOKEN)
        yield Harness(tmp_path, controller, capsys)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def test_apply_several_files_prints_each_object(surge, tmp_path):
    a = _write(tmp_path, "a.yaml", HELLO)
    b = _write(tmp_path, "b.yaml", HELLO.replace("name: hello", "name: bye")
               + "---\n" + HELLO.replace("name: hello", "name: third"))
    rc, out, err = await surge.run("apply", "-f", a, "-f", b)
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "service.serving.knative.dev/hello created (namespace default)",
        "service.serving.knative.dev/bye created (namespace default)",
        "service.serving.knative.dev/third created (namespace default)"]
    assert [f for f, _ in surge.controller.calls[0][1]] == [a, b]


async def test_rejected_apply_prints_every_problem_and_exits_1(surge, tmp_path):
    bad = _write(tmp_path, "bad.yaml", "kind: Route\nmetadata: {}\n---\nkind: Route\n"
                 "metadata: {name: r}\n")
    rc, out, err = await surge.run("apply", "-f", bad)
    assert (rc, out) == (1, "")
    assert err == (
        f"surge: apply rejected, nothing was changed: {bad}[0].metadata.name: is required; "
        f"Route/None: {bad}[0].kind: 'Route' is not supported; "
        f"Route/r: {bad}[1].kind: 'Route' is not supported\n")


async def test_apply_of_a_missing_file_sends_nothing(surge, tmp_path):
    rc, _, err = await surge.run("apply", "-f", str(tmp_path / "nope.yaml"))
    assert rc == 1
    assert err == f"surge: cannot read {tmp_path / 'nope.yaml'}: No such file or directory\n"
    assert surge.controller.calls == []


async def test_get_services_table_and_json(surge):
    await surge.apply_hello()
    rc, out, _ = await surge.run("get", "services", "-n", "default")
    assert rc == 0
    assert out.splitlines() == [
        "NAME    URL                                LATESTCREATED   LATESTREADY   READY",
        "hello   http://hello.default.example.com   hello-00001     hello-00001   True"]
    rc, out, _ = await surge.run("get", "ksvc", "-o", "json")
    listed = json.loads(out)
    assert (rc, listed["kind"], len(listed["items"])) == (0, "List", 1)
    svc = listed["items"][0]
    assert svc["apiVersion"] == "serving.knative.dev/v1"
    assert svc["status"]["latestReadyRevisionName"] == "hello-00001"
    assert surge.controller.calls[-1] == ("list", ("services", None))


async def test_get_without_namespace_shows_the_namespace_column(surge):
    await surge.apply_hello()
    rc, out, _ = await surge.run("get", "routes")
    assert rc == 0
    assert out.splitlines() == [
        "NAMESPACE   NAME    URL                                TRAFFIC            READY",
        "default     hello   http://hello.default.example.com   100% hello-00001   True"]


async def test_get_revisions_joins_route_traffic(surge):
    await surge.apply_hello()
    await surge.controller.apply([("h", HELLO)])  # hello-00002, traffic stays on 00001
    rc, out, _ = await surge.run("get", "revisions", "-n", "default")
    assert rc == 0
    assert out.splitlines() == [
        "NAME          SERVICE   TRAFFIC   TAGS   GENERATION   READY",
        "hello-00001   hello     100%      -      1            True",
        "hello-00002   hello     -         -      2            True"]


async def test_get_pods_shows_phase_ports_and_pids(surge):
    await surge.apply_hello()
    rc, out, _ = await surge.run("get", "po", "-n", "default")
    assert rc == 0
    assert out.splitlines() == [
        "NAME                REVISION      PHASE     READY   RESTARTS   PORTS"
        "                    PIDS",
        "hello-00001-pod-1   hello-00001   Running   true    0          queue=40001,user=40002"
        "   queue-proxy=11,app=12"]


async def test_get_nothing_says_so(surge):
    rc, out, _ = await surge.run("get", "services", "-n", "prod")
    assert (rc, out) == (0, "No services found in namespace prod.\n")


async def test_describe_service_text_and_json(surge):
    await surge.apply_hello()
    surge.controller.events = [{"time": 0, "kind": "Ready", "object": "service/default/hello",
                                "message": "service is ready"}]
    rc, out, _ = await surge.run("describe", "service", "hello")
    assert rc == 0
    for expected in ["Name:          hello", "URL:           http://hello.default.example.com",
                     "LatestReady:   hello-00001", "100%      hello-00001 (@latest)",
                     "hello-00001-pod-1", "service is ready", "Ready   True"]:
        assert expected in out
    rc, out, _ = await surge.run("describe", "svc", "hello", "-o", "json")
    assert rc == 0
    assert json.loads(out)["metadata"] == {"name": "hello", "namespace": "default",
                                           "generation": 1}


NOT_FOUND = [
    pytest.param(["describe", "service", "nope"], id="describe"),
    pytest.param(["delete", "service", "nope"], id="delete"),
    pytest.param(["service", "update", "nope", "--env", "A=1"], id="update"),
    pytest.param(["logs", "nope"], id="logs"),
]


@pytest.mark.parametrize("argv", NOT_FOUND)
async def test_unknown_service_is_one_line_and_exit_1(surge, argv):
    rc, out, err = await surge.run(*argv, "-n", "dev")
    assert (rc, out, err) == (1, "", 'surge: service "nope" not found in namespace "dev"\n')


async def test_service_update_sends_parsed_flags(surge):
    await surge.apply_hello()
    rc, out, _ = await surge.run(
        "service", "update", "hello", "--env", "A=1", "--env", "B-", "--traffic",
        "hello-00001=80", "--traffic", "@latest=20", "--tag", "hello-00001=blue",
        "--untag", "old")
    assert rc == 0
    assert surge.controller.calls[-1] == ("update", (
        "default", "hello", {"A": "1", "B": None},
        [TrafficSpec("hello-00001", 80), TrafficSpec("@latest", 20)],
        [TagSpec("hello-00001", "blue")], ["old"]))
    assert out.splitlines() == ["Service 'hello' updated in namespace 'default'.",
                                "URL: http://hello.default.example.com",
                                "Latest revision: hello-00002"]


@pytest.mark.parametrize(("flags", "message"), [
    pytest.param(["--traffic", "a=50"], "surge: --traffic: percents sum to 50, they must sum "
                 "to 100", id="bad-sum"),
    pytest.param([], "surge: service update: nothing to change: give --env, --traffic, --tag "
                 "or --untag", id="nothing"),
])
async def test_bad_update_flags_send_nothing(surge, flags, message):
    await surge.apply_hello()
    before = list(surge.controller.calls)
    rc, _, err = await surge.run("service", "update", "hello", *flags)
    assert (rc, err) == (1, message + "\n")
    assert surge.controller.calls == before


async def test_update_rejected_by_the_stack_prints_its_problems(surge):
    await surge.apply_hello()
    rc, _, err = await surge.run("service", "update", "hello", "--traffic", "ghost=100")
    assert rc == 1
    assert err == ("surge: update of service default/hello rejected, nothing was changed: "
                   "traffic: unknown revision or tag 'ghost'\n")


async def test_delete_service(surge):
    await surge.apply_hello()
    rc, out, _ = await surge.run("delete", "service", "hello")
    assert (rc, out) == (0, "Service 'hello' deleted in namespace 'default'.\n")
    assert surge.controller.services == {}


async def test_logs_prints_every_file_prefixed_and_filters_by_revision(surge, tmp_path):
    await surge.apply_hello()
    one = _write(tmp_path, "hello-00001-a.log", "started\nserving\n")
    two = _write(tmp_path, "hello-00002-b.log", "v2 up\nno newline at end")
    surge.controller.logs[("default", "hello")] = [one, two]
    rc, out, _ = await surge.run("logs", "hello")
    assert rc == 0
    assert out.splitlines() == ["[hello-00001-a] started", "[hello-00001-a] serving",
                                "[hello-00002-b] v2 up", "[hello-00002-b] no newline at end"]
    rc, out, _ = await surge.run("logs", "hello", "--revision", "hello-00002")
    assert (rc, out) == (0, "v2 up\nno newline at end\n")


LOG_CONTAINERS = [
    pytest.param([], ["app line"], id="the-app-by-default"),
    pytest.param(["-c", "queue-proxy"], ["qp line"], id="the-queue-proxy"),
    pytest.param(["--all-containers"], ["[hello-00001-a] app line",
                                        "[hello-00001-a.queue-proxy] qp line"], id="both"),
]


@pytest.mark.parametrize(("flags", "want"), LOG_CONTAINERS)
async def test_logs_shows_the_app_or_queue_proxy_log(surge, tmp_path, flags, want):
    await surge.apply_hello()
    surge.controller.logs[("default", "hello")] = [
        _write(tmp_path, "hello-00001-a.log", "app line\n"),
        _write(tmp_path, "hello-00001-a.queue-proxy.log", "qp line\n")]
    rc, out, err = await surge.run("logs", "hello", *flags)
    assert (rc, err, out.splitlines()) == (0, "", want)


async def test_logs_follow_prints_new_lines_until_the_service_is_deleted(surge, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(cli, "FOLLOW_POLL_S", 0.02)
    monkeypatch.setattr(cli, "FOLLOW_REFRESH_S", 0.05)
    await surge.apply_hello()
    log = _write(tmp_path, "hello-00001-a.log", "first\n")
    surge.controller.logs[("default", "hello")] = [log]
    second_refresh = asyncio.Event()
    real_log_paths = surge.controller.log_paths
    loop = asyncio.get_running_loop()

    async def counting(ns, name, revision=None, container="user-container"):
        paths = await real_log_paths(ns, name, revision, container)
        if sum(c[0] == "logs" for c in surge.controller.calls) == 2:
            loop.call_soon(second_refresh.set)
        return paths

    surge.controller.log_paths = counting
    follow = asyncio.create_task(surge.run("logs", "hello", "-f"))
    async with asyncio.timeout(20):
        await second_refresh.wait()  # the first read is done: what follows is new
    with open(log, "a") as f:
        f.write("second\npartial")
    await surge.controller.delete_service("default", "hello")
    rc, out, _ = await follow
    assert (rc, out) == (0, "first\nsecond\npartial\n")


async def test_wrong_token_is_refused(surge):
    write_admin_file(surge.state_dir, port=(await _port_of(surge)), token="wrong")
    rc, _, err = await surge.run("get", "services")
    assert (rc, err) == (1, "surge: missing or wrong admin token (see admin.json)\n")


async def _port_of(surge: Harness) -> int:
    return json.loads((surge.state_dir / "admin.json").read_text())["port"]


async def test_state_dir_from_flag_before_command_and_from_env(surge, monkeypatch, capsys):
    await surge.apply_hello()
    async with asyncio.timeout(20):
        rc = await asyncio.to_thread(main, ["--state-dir", str(surge.state_dir), "get", "svc"])
        assert rc == 0
        monkeypatch.setenv("SURGE_STATE_DIR", str(surge.state_dir))
        assert await asyncio.to_thread(main, ["get", "svc", "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert "hello-00001" in out and '"kind": "List"' in out


def test_no_running_stack_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["get", "services", "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"surge: no running stack in {tmp_path}: start one with `surge up`\n")


def test_up_without_a_stack_module_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "serving.stack", None)
    assert main(["up", "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "surge: this build has no stack to run (serving.stack is missing)\n")


def test_up_runs_the_stack_holding_the_lock(tmp_path, monkeypatch):
    seen = {}

    def run(*, port, state_dir):
        seen.update(port=port, state_dir=state_dir)
        with pytest.raises(Exception, match="already running"):
            StateDirLock(state_dir).acquire()
        return 0

    monkeypatch.setitem(sys.modules, "serving.stack", types.SimpleNamespace(run=run))
    assert main(["up", "--port", "9999", "--state-dir", str(tmp_path / "s")]) == 0
    assert seen == {"port": 9999, "state_dir": tmp_path / "s"}


def test_second_up_on_one_state_dir_refuses(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "serving.stack",
                        types.SimpleNamespace(run=lambda **_: pytest.fail("must not run")))
    with StateDirLock(tmp_path):
        assert main(["up", "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"surge: another `surge up` (pid {os.getpid()}) is already running on {tmp_path};"
        " stop it first or use another --state-dir\n")


HELP = [
    pytest.param([], ["up", "apply", "get", "describe", "service", "delete", "logs",
                      "--state-dir"], id="surge"),
    pytest.param(["up"], ["--port", "--state-dir"], id="up"),
    pytest.param(["apply"], ["-f", "--filename", "--state-dir"], id="apply"),
    pytest.param(["get"], ["KIND", "-o", "--output", "-n", "--namespace"], id="get"),
    pytest.param(["describe"], ["service"], id="describe"),
    pytest.param(["describe", "service"], ["NAME", "-n", "--namespace", "-o"],
                 id="describe-service"),
    pytest.param(["service"], ["update"], id="service"),
    pytest.param(["service", "update"], ["NAME", "--env", "--traffic", "--tag", "--untag",
                                         "-n"], id="service-update"),
    pytest.param(["delete"], ["service"], id="delete"),
    pytest.param(["delete", "service"], ["NAME", "-n", "--namespace"], id="delete-service"),
    pytest.param(["logs"], ["NAME", "--revision", "-f", "--follow", "-n", "--container",
                            "--all-containers"], id="logs"),
]


@pytest.mark.parametrize(("argv", "flags"), HELP)
def test_help_for_every_command_exits_0_and_names_its_flags(argv, flags, capsys):
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: surge")
    for flag in flags:
        assert flag in out


@pytest.mark.parametrize("argv", [
    pytest.param(["get", "widgets"], id="unknown-kind"),
    pytest.param(["apply"], id="apply-without-f"),
    pytest.param(["up", "--port", "70000"], id="bad-port"),
    pytest.param(["describe", "route", "x"], id="describe-unknown-kind"),
    pytest.param([], id="no-command"),
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage: surge" in capsys.readouterr().err


TRAFFIC = [
    pytest.param(["a=100"], [TrafficSpec("a", 100)], id="one-revision"),
    pytest.param(["a=80", "@latest=20"], [TrafficSpec("a", 80), TrafficSpec("@latest", 20)],
                 id="revision-and-latest"),
    pytest.param(["blue=0", "green=100"], [TrafficSpec("blue", 0), TrafficSpec("green", 100)],
                 id="tags-with-zero"),
    pytest.param([], [], id="none"),
]


@pytest.mark.parametrize(("values", "want"), TRAFFIC)
def test_parse_traffic(values, want):
    assert parse_traffic(values) == want


BAD_FLAGS = [
    pytest.param(parse_traffic, ["a"], "--traffic 'a': want REV=PERCENT, @latest=PERCENT or "
                 "TAG=PERCENT", id="traffic-no-equals"),
    pytest.param(parse_traffic, ["=100"], "--traffic '=100': want REV=PERCENT, @latest=PERCENT"
                 " or TAG=PERCENT", id="traffic-no-target"),
    pytest.param(parse_traffic, ["a=x"], "--traffic 'a=x': percent 'x' is not a whole number",
                 id="traffic-not-a-number"),
    pytest.param(parse_traffic, ["a=-5"], "--traffic 'a=-5': percent '-5' is not a whole number",
                 id="traffic-negative"),
    pytest.param(parse_traffic, ["a=101"], "--traffic 'a=101': percent 101 must be between 0 "
                 "and 100", id="traffic-over-100"),
    pytest.param(parse_traffic, ["a=50", "a=50"], "--traffic 'a=50': 'a' is given more than "
                 "once", id="traffic-twice"),
    pytest.param(parse_traffic, ["a=50", "b=40"], "--traffic: percents sum to 90, they must "
                 "sum to 100", id="traffic-sum"),
    pytest.param(parse_tags, ["rev"], "--tag 'rev': want REVISION=TAG (REVISION may be "
                 "@latest)", id="tag-no-equals"),
    pytest.param(parse_tags, ["a=x", "b=x"], "--tag 'b=x': tag 'x' is given more than once",
                 id="tag-twice"),
    pytest.param(parse_untags, ["a=b"], "--untag 'a=b': want a tag name", id="untag-pair"),
    pytest.param(parse_untags, ["x", "x"], "--untag 'x': given more than once", id="untag-twice"),
    pytest.param(parse_env, ["NOVALUE"], "--env 'NOVALUE': want NAME=VALUE, or NAME- to "
                 "remove it", id="env-no-equals"),
    pytest.param(parse_env, ["=v"], "--env '=v': want NAME=VALUE, or NAME- to remove it",
                 id="env-no-name"),
    pytest.param(parse_env, ["A=1", "A-"], "--env 'A-': A is given more than once",
                 id="env-twice"),
]


@pytest.mark.parametrize(("parse", "values", "message"), BAD_FLAGS)
def test_bad_flag_values_name_the_flag_and_value(parse, values, message):
    with pytest.raises(CliError) as err:
        parse(values)
    assert str(err.value) == message


@pytest.mark.parametrize(("values", "want"), [
    pytest.param(["A=1", "B=x=y", "C="], {"A": "1", "B": "x=y", "C": ""}, id="set"),
    pytest.param(["OLD-"], {"OLD": None}, id="remove"),
])
def test_parse_env(values, want):
    assert parse_env(values) == want


def test_parse_tags_accepts_latest():
    assert parse_tags(["@latest=canary", "r1=blue"]) == [TagSpec("@latest", "canary"),
                                                          TagSpec("r1", "blue")]


def test_log_tailer_returns_whole_lines_and_restarts_after_truncation(tmp_path):
    log = tmp_path / "pod.log"
    log.write_bytes(b"one\ntw")
    tailer = LogTailer()
    tailer.add(str(log))
    tailer.add(str(log))  # once only
    assert tailer.read_new() == ["one\n"]
    with log.open("ab") as f:
        f.write(b"o\nthree")
    assert tailer.read_new() == ["two\n"]
    log.write_bytes(b"new\n")  # truncated and rewritten (shorter than the offset)
    assert tailer.read_new() == ["threenew\n"]
    tailer.add(str(tmp_path / "gone.log"))  # missing files read as empty
    assert tailer.read_new(final=True) == []


def test_services_table_marks_missing_values():
    svc = {"metadata": {"name": "s", "namespace": "ns"}, "status": {}}
    assert services_table([svc], all_namespaces=True).splitlines()[1].split() == [
        "ns", "s", "-", "-", "-", "Unknown"]
