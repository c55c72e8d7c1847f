"""`python -m autoscaler replay`: the printed table, JSON, the plot, and exit code 2 on bad input.

Most cases run `main()` in-process on the bundled traces and the shipped example
ConfigMap (which parses to the defaults: target 70, capacity 100 per pod). One
integration test runs the real `python -m autoscaler` and one regenerates the traces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "config-autoscaler.yaml"
TRACES = ROOT / "bench" / "traces"
STEP = TRACES / "step.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def replay_cli(*args: str | Path, config: Path = EXAMPLE_CONFIG, trace: Path = STEP) -> int:
    """Run the replay subcommand in-process; its exit code."""
    return main(["replay", "--config", str(config), "--trace", str(trace), *map(str, args)])


def table_rows(out: str) -> dict[int, list[str]]:
    """The tick table's rows by second: the columns after `t`."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0].isdigit():
            rows[int(cells[0])] = cells[1:]
    return rows


def test_prints_ticks_and_totals_for_step_trace(capsys):
    assert replay_cli() == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[1].split() == ["t", "stable", "panic", "desired", "replicas", "ready", "panic",
                                           "mode", "pa"]
    rows = table_rows(out)
    assert sorted(rows) == list(range(2, 300, 2))  # every 2 s tick of a 300 s trace
    # t = 30: 300 arrives on 1 pod in Proxy mode with desired 0: a poke. Stable 300 over
    # the 29 s of data (t = 2..30) = 10.34, panic 300 / 6 = 50: 1 pod, no panic.
    assert rows[30] == ["10.34", "50.00", "1", "1", "1", "no", "Proxy", "Active", "(poke)"]
    # t = 32: panic window 900 / 6 = 150 -> ceil(150 / 70) = 3 for 1 ready: panic.
    assert rows[32] == ["29.03", "150.00", "3", "3", "1", "yes", "Proxy", "Active"]
    # 300 / 70 -> 5 pods; with 500 capacity and no load the activator leaves (EBC 289).
    assert rows[180][2:7] == ["5", "5", "5", "no", "Serve"]
    assert rows[298][2:8] == ["0", "0", "0", "no", "Proxy", "Inactive"]
    assert out.splitlines()[-1].startswith("totals: pod-seconds ")


def test_quiet_prints_only_settings_and_totals(capsys):
    assert replay_cli("--quiet") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("concurrency trace, 300 s: target 70 per pod (total 100), capacity 100 per pod")
    # 300 on 1 pod (capacity 100) for t = 30..33: the poke at 30 asks for 1, the tick at 32
    # for 3, ready at 34 (300 <= 3 x 100). 4 x 200 = 800 queued. Pod-seconds: 1 x 32
    # (t = 2..33) + 3 x 2 + 4 x 2 + 5 x 147 (t = 38..184) + 4 x 14 + 3 x 14 + 2 x 14 + 1 x 18.
    assert lines[1].startswith("totals: pod-seconds 925, under-provisioned 4 s, queued 800 request-seconds, "
                               "cold starts 0")


def test_json_has_documented_fields_and_matches_table(tmp_path, capsys):
    out_json = tmp_path / "out.json"
    assert replay_cli("--json", out_json, "--annotation", "target=50", "--container-concurrency", "10") == 0
    rows = table_rows(capsys.readouterr().out)
    data = json.loads(out_json.read_text())
    assert data["spec"]["target"] == 7.0           # min(50, CC 10) x 0.7
    assert data["spec"]["container_concurrency"] == 10
    assert data["options"] == {"tick_interval_s": 2, "pod_start_delay_s": 2, "drain_s": 0,
                               "capacity_per_pod": 10.0}
    assert {tick["t"] for tick in data["ticks"]} == set(rows)
    for tick in data["ticks"]:
        assert [str(tick["desired"]), str(tick["replicas"]), str(tick["ready"])] == rows[tick["t"]][2:5]
    totals = data["totals"]
    assert set(totals) == {"seconds", "pod_seconds", "under_provisioned_seconds", "queued_requests",
                           "queued_unit", "cold_starts", "panic_seconds", "max_ready_pods"}
    assert totals["seconds"] == 300 and totals["queued_unit"] == "request-seconds"
    assert totals["max_ready_pods"] == 43          # 300 / 7 = 42.9 -> 43 pods


def test_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "out.png"
    assert replay_cli("--plot", png, "--quiet", trace=TRACES / "spike.csv") == 0
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # two panels of lines and labels, not an empty canvas


@pytest.mark.parametrize("name", ["step.csv", "spike.csv", "diurnal.csv", "idle-gaps.csv"])
def test_every_bundled_trace_replays_with_the_example_config(name, capsys):
    assert replay_cli("--quiet", trace=TRACES / name) == 0
    assert capsys.readouterr().err == ""


# (ConfigMap text, annotation args, trace text, what stderr must name)
BAD_INPUTS = [
    pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\n"
                 "data:\n  max-scale-up-rate: \"1\"\n  stable-window: \"2s\"\n", [], None,
                 ["max-scale-up-rate: '1' must be > 1.0", "stable-window: '2s'"], id="bad-configmap-values"),
    pytest.param("stable-window: 60\n", [], None, ["stable-window", "must be a string"], id="unquoted-value"),
    pytest.param("a: [\n", [], None, ["is not valid YAML"], id="broken-yaml"),
    pytest.param(None, ["--annotation", "window=3s"], None, ["autoscaling.knative.dev/window", "3s"],
                 id="bad-annotation"),
    pytest.param(None, ["--annotation", "panic-treshold-percentage=150"], None,
                 ["autoscaling.knative.dev/panic-treshold-percentage", "not an annotation"], id="typo-annotation"),
    pytest.param(None, [], "t,concurrency\n0,5\n1,5\n2,lots\n", ["line 4", "value 'lots'"], id="bad-trace-line"),
    pytest.param(None, [], "t,rps\n0,5\n", ["autoscaling.knative.dev/metric", "measures rps"],
                 id="trace-metric-mismatch"),
    pytest.param(None, ["--pod-start-delay", "0"], None, ["--pod-start-delay", ">= 1"], id="zero-start-delay"),
]


@pytest.mark.parametrize(("config_text", "args", "trace_text", "named"), BAD_INPUTS)
def test_bad_input_exits_2_naming_the_key_and_writes_nothing(tmp_path, capsys, config_text, args, trace_text,
                                                             named):
    config, trace = EXAMPLE_CONFIG, STEP
    if config_text is not None:
        config = tmp_path / "config-autoscaler.yaml"
        config.write_text(config_text)
    if trace_text is not None:
        trace = tmp_path / "load.csv"
        trace.write_text(trace_text)
    out_json, png = tmp_path / "out.json", tmp_path / "out.png"
    code = replay_cli(*args, "--json", out_json, "--plot", png, config=config, trace=trace)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("replay: ") and err.count("\n") == 1  # one message, one line
    for words in named:
        assert words in err
    assert not out_json.exists() and not png.exists()


def test_malformed_annotation_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        replay_cli("--annotation", "no-equals-sign")
    assert caught.value.code == 2
    assert "'no-equals-sign' is not KEY=VALUE" in capsys.readouterr().err


@pytest.mark.integration
def test_module_runs_as_a_subprocess(tmp_path):
    out_json = tmp_path / "idle.json"
    proc = subprocess.run(
        [sys.executable, "-m", "autoscaler", "replay", "--config", str(EXAMPLE_CONFIG),
         "--trace", str(TRACES / "idle-gaps.csv"), "--json", str(out_json)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    # Four bursts, each after an idle gap longer than window + grace: four cold starts.
    assert json.loads(out_json.read_text())["totals"]["cold_starts"] == 4
    assert "cold starts 4" in proc.stdout.splitlines()[-1]


@pytest.mark.integration
def test_bundled_traces_match_their_generator(tmp_path):
    subprocess.run([sys.executable, str(TRACES / "make_traces.py"), "--out", str(tmp_path)],
                   capture_output=True, timeout=60, check=True)
    for name in ("step.csv", "spike.csv", "diurnal.csv", "idle-gaps.csv"):
        assert (tmp_path / name).read_bytes() == (TRACES / name).read_bytes(), name
