"""The command users run: exit codes, streams, formats, gates, config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
from typer.testing import CliRunner

from lipaudit.cli import app
from lipaudit.report.json_report import schema
from tests.conftest import ROOT, SAMPLES

SAMPLE = str(SAMPLES / "digits_cnn_bn.onnx")
runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def lipaudit(*args, env=None, cwd=None):
    """The real console entry, as a subprocess (python -m lipaudit)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FORCE_COLOR", None) if env is None or "FORCE_COLOR" not in env else None
    return subprocess.run([sys.executable, "-m", "lipaudit", *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT)


def validate(report):
    jsonschema.validate(report, schema())


def test_pass_exit_0_and_json_on_stdout():
    res = run("check", SAMPLE, "--format", "json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    validate(report)
    assert report["verdict"] == "pass"
    assert {"tn", "certified"} <= set(report["network"])
    for layer in report["layers"]:
        assert {"tn", "certified"} <= set(layer["values"])
        for v in layer["values"].values():
            assert v["kind"] in ("upper", "estimate", "exact", "lower")


def test_gate_fails_exit_1_with_finding():
    res = run("check", SAMPLE, "--max-lipschitz", "1", "--format", "json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    validate(report)
    assert report["verdict"] == "fail"
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["LIP001"]


def test_layer_gate():
    res = run("check", str(SAMPLES / "mnist_spectral_norm.onnx"), "--max-layer-norm", "1.0", "--format", "json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert {f["node"] for f in report["findings"] if f["code"] == "LIP002"} >= {"/conv1/Conv", "/conv2/Conv"}


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(open(SAMPLE, "rb").read()[:3000])
    text = tmp_path / "model.onnx"
    text.write_text("this is not a model\n")
    return [str(empty), str(noise), str(truncated), str(text), str(tmp_path), str(tmp_path / "missing.onnx")]


def test_bad_input_exit_2_one_line_no_traceback(tmp_path):
    for path in _bad_inputs(tmp_path):
        res = lipaudit("check", path)
        assert res.returncode == 2, (path, res.stderr)
        assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
        lines = [l for l in res.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (path, res.stderr)


def test_bad_input_json_report_says_error(tmp_path):
    for path in _bad_inputs(tmp_path):
        res = run("check", path, "--format", "json")
        assert res.exit_code == 2
        report = json.loads(res.stdout)
        validate(report)
        assert report["verdict"] == "error" and report["layers"] == [] and report["network"] == {}
        assert report["findings"][0]["code"] == "LIP100"


def test_unsupported_op_gives_layers_and_says_why_there_is_no_certificate():
    from tests.conftest import shared_model

    path = shared_model("version-slim-320.onnx")
    res = lipaudit("check", path, "--format", "json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    validate(report)
    assert len(report["layers"]) == 42 and "certified" not in report["network"]
    reason = report["network"]["unavailable"]["reasons"][0]
    assert reason["op"] == "Exp" and reason["node"] == "387"
    assert [f["code"] for f in report["findings"]] == ["LIP101", "LIP013"]
    assert "--input-range" in report["findings"][1]["message"] and "--until" in report["findings"][1]["message"]
    # a gate that needs the network cannot be decided: exit 2, never a pass
    res = lipaudit("check", path, "--max-lipschitz", "10")
    assert res.returncode == 2 and "Exp" in res.stderr and "'387'" in res.stderr and "Traceback" not in res.stderr


def test_usage_errors_exit_2():
    assert run("check", SAMPLE, "--method", "nope").exit_code == 2
    assert run("check", SAMPLE, "--compare", "nope").exit_code == 2
    assert run("check", SAMPLE, "--input-shape", "a,b").exit_code == 2
    assert run("check", SAMPLE, "--output", "no_such_value").exit_code == 2
    assert run("check", SAMPLE, "--max-increase", "lots").exit_code == 2
    assert run("check", SAMPLE, "--bogus-flag").exit_code == 2


def test_quiet_prints_only_the_verdict_line():
    res = lipaudit("check", SAMPLE, "-q")
    assert res.returncode == 0 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("PASS ") and "certified=" in lines[0]


def test_json_file_and_table(tmp_path):
    out = tmp_path / "r.json"
    res = lipaudit("check", SAMPLE, "--json", str(out))
    assert res.returncode == 0 and res.stdout == ""
    validate(json.loads(out.read_text()))
    assert "network certified" in res.stderr and "verdict" in res.stderr


def test_no_color_and_no_ansi_in_files(tmp_path):
    out = tmp_path / "r.json"
    res = lipaudit("check", SAMPLE, "--json", str(out), env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert "\x1b[" not in res.stderr
    assert "\x1b[" not in out.read_text()
    colored = lipaudit("check", SAMPLE, env={"FORCE_COLOR": "1"})
    assert "\x1b[" in colored.stderr  # FORCE_COLOR without NO_COLOR does colour


def test_baseline_regression(tmp_path):
    base = tmp_path / "base.json"
    assert run("check", SAMPLE, "--json", str(base), "-q").exit_code == 0
    same = run("check", SAMPLE, "--baseline", str(base), "--format", "json")
    assert same.exit_code == 0
    # a baseline that claims a much smaller bound: the current model regressed
    data = json.loads(base.read_text())
    data["network"]["certified"]["value"] /= 2
    for layer in data["layers"]:
        layer["values"]["certified"]["value"] /= 2
    tight = tmp_path / "tight.json"
    tight.write_text(json.dumps(data))
    worse = run("check", SAMPLE, "--baseline", str(tight), "--max-increase", "5%", "--format", "json")
    assert worse.exit_code == 1
    codes = {f["code"] for f in json.loads(worse.stdout)["findings"]}
    assert {"LIP003", "LIP004"} <= codes
    allowed = run("check", SAMPLE, "--baseline", str(tight), "--max-increase", "150%", "-q")
    assert allowed.exit_code == 0
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    assert run("check", SAMPLE, "--baseline", str(broken), "-q").exit_code == 2


def test_config_from_pyproject_and_flags_win(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.lipaudit]\nmax-lipschitz = 1.0\nmethod = "tn"\n')
    res = lipaudit("check", SAMPLE, "-q", cwd=tmp_path)
    assert res.returncode == 1
    res = lipaudit("check", SAMPLE, "-q", "--max-lipschitz", "1e12", cwd=tmp_path)
    assert res.returncode == 0
    (tmp_path / "pyproject.toml").write_text('[tool.lipaudit]\nbogus = 1\n')
    assert lipaudit("check", SAMPLE, "-q", cwd=tmp_path).returncode == 2


def test_deterministic_for_a_seed():
    a = run("check", SAMPLE, "--format", "json", "--no-timings", "--seed", "3").stdout
    b = run("check", SAMPLE, "--format", "json", "--no-timings", "--seed", "3").stdout
    assert a == b


def test_explain_version_and_module_entry():
    res = run("explain", "LIP001")
    assert res.exit_code == 0 and "network-bound-exceeded" in res.stdout
    assert run("explain", "tn-below-exact").exit_code == 0
    assert run("explain", "LIP999").exit_code == 2
    version = lipaudit("--version")
    assert version.returncode == 0 and version.stdout.startswith("lipaudit ")
    helptext = lipaudit("check", "--help")
    assert helptext.returncode == 0 and "--max-lipschitz" in helptext.stdout


def test_several_models_one_row_each():
    models = [str(SAMPLES / f"{m}.onnx") for m in ("digits_cnn_bn", "mnist_spectral_norm")]
    res = lipaudit("check", *models, "--jobs", "2", "-q")
    assert res.returncode == 0
    assert len(res.stderr.strip().splitlines()) == 2
    res = run("check", *models, "--format", "json")
    reports = json.loads(res.stdout)["reports"]
    assert [r["model"]["path"] for r in reports] == models
    res = run("check", models[0], "--max-lipschitz", "1e-9", models[1], "--format", "json")
    both = json.loads(res.stdout)
    assert both["verdict"] == "fail" and res.exit_code == 1  # the worst verdict, whichever report comes first
    for r in reports:
        validate(r)


def test_every_sample_model_report_is_valid():
    for path in sorted(SAMPLES.glob("*.onnx")):
        res = run("check", str(path), "--format", "json", "--compare", "exact,f4")
        assert res.exit_code == 0, res.stderr
        report = json.loads(res.stdout)
        validate(report)
        assert "exact" in report["network"]
