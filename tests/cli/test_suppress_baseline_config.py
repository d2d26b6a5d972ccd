"""Suppressions and waivers, baselines that compare like with like, and config validated like flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lipaudit.baseline_match import basis, differences
from lipaudit.cli import app
from lipaudit.findings import Finding
from lipaudit.policy import verdict
from lipaudit.suppress import Suppressions, Waiver, apply, layer_matches, parse_codes, parse_waivers
from lipaudit.errors import UsageError
from tests.conftest import ROOT, SAMPLES

SAMPLE = str(SAMPLES / "digits_cnn_bn.onnx")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def _findings():
    return [Finding("LIP002", "stem too big", node="/stem/stem.0/Conv", value=9.0, threshold=1.0),
            Finding("LIP002", "block too big", node="/layer1/conv1/Conv", value=3.0, threshold=1.0),
            Finding("LIP007", "not converged", node="/layer1/conv1/Conv"),
            Finding("LIP006", "estimate")]


# --- suppressions (pure) -----------------------------------------------------------------------

def test_waiver_keeps_the_finding_marked_and_out_of_the_verdict():
    rules = Suppressions(waivers=(Waiver("stem.0", "LIP002", "measured separately"),))
    kept, dropped = apply(_findings(), rules)
    assert dropped == {} and len(kept) == 4
    assert kept[0].waived and kept[0].reason == "measured separately"
    assert kept[0].to_json()["waived"] is True and kept[0].to_json()["reason"] == "measured separately"
    assert not kept[1].waived
    assert verdict(kept) == "fail"  # the second LIP002 still counts
    all_waived, _ = apply(_findings(), Suppressions(waivers=(Waiver("*", "LIP002", "both"),)))
    assert verdict(all_waived) == "pass"


def test_waiver_matches_layer_names_globs_and_module_paths():
    assert layer_matches("stem.0", "/stem/stem.0/Conv")
    assert layer_matches("stem.0", "stem.0.weight")
    assert layer_matches("/layer1/*", "/layer1/conv1/Conv")
    assert not layer_matches("stem", "/stem/stem.0/Conv")
    assert not layer_matches("stem.0", "/stem/stem.01/Conv")
    # a waiver never touches a finding of another code or a network-level finding
    kept, _ = apply(_findings(), Suppressions(waivers=(Waiver("*", "LIP006", "x"),)))
    assert not any(f.waived for f in kept)


def test_select_and_ignore():
    kept, dropped = apply(_findings(), Suppressions(ignore=("LIP007",)))
    assert [f.code for f in kept] == ["LIP002", "LIP002", "LIP006"] and dropped == {"LIP007": 1}
    kept, dropped = apply(_findings(), Suppressions(select=("LIP002", "LIP007"), ignore=("LIP007",)))
    assert [f.code for f in kept] == ["LIP002", "LIP002"] and dropped == {"LIP006": 1, "LIP007": 1}
    run_error = [Finding("LIP100", "unreadable")]
    assert apply(run_error, Suppressions(select=("LIP001",)))[0] == run_error  # never selected away


def test_codes_and_waivers_are_validated():
    assert parse_codes(["lip001,layer-regressed", "LIP001"], "--ignore") == ("LIP001", "LIP004")
    for bad in (["LIP999"], ["LIP104"], ["nonsense"]):
        with pytest.raises(UsageError):
            parse_codes(bad, "--ignore")
    assert parse_waivers([{"layer": "a", "code": "LIP002", "reason": "r"}])[0] == Waiver("a", "LIP002", "r")
    for bad in ([{"layer": "a", "code": "LIP002"}], [{"layer": "a", "code": "LIP002", "reason": "  "}],
                [{"layer": "a", "code": "LIP002", "reason": "r", "until": "x"}], {"layer": "a"},
                [{"layer": "a", "code": "LIP100", "reason": "r"}]):
        with pytest.raises(UsageError):
            parse_waivers(bad)


def test_cli_ignore_select_and_waiver(tmp_path, monkeypatch):
    res = run("check", SAMPLE, "--max-layer-norm", "5", "--format", "json", "--ignore", "LIP002")
    assert res.exit_code == 0
    report = json.loads(res.stdout)
    assert report["suppressed"] == {"LIP002": 3} and report["verdict"] == "pass"
    res = run("check", SAMPLE, "--max-layer-norm", "5", "--format", "json", "--select", "LIP006")
    assert res.exit_code == 0 and [f["code"] for f in json.loads(res.stdout)["findings"]] == ["LIP006"]
    bad = run("check", SAMPLE, "--ignore", "LIP100")
    assert bad.exit_code == 2 and "cannot be suppressed" in bad.stderr
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lipaudit]\nmax-layer-norm = 5.0\nignore = ["LIP006"]\n'
        + "".join(f'[[tool.lipaudit.waive]]\nlayer = "features.{i}"\ncode = "LIP002"\nreason = "known [#{i}]"\n'
                  for i in (0, 3, 6)))
    monkeypatch.chdir(tmp_path)
    res = run("check", SAMPLE, "--format", "json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["verdict"] == "pass" and report["suppressed"] == {"LIP006": 1}
    assert [f.get("reason") for f in report["findings"]] == ["known [#0]", "known [#3]", "known [#6]"]


# --- baselines --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certified_baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "certified.json"
    res = run("check", SAMPLE, "--method", "certified", "--no-attained", "--json", str(path), "-q")
    assert res.exit_code == 0
    return path


def test_baseline_with_other_settings_is_refused_naming_the_difference(certified_baseline):
    res = run("check", SAMPLE, "--baseline", str(certified_baseline))
    assert res.exit_code == 2
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "--method: certified -> tn" in line
    assert "per-layer methods: certified f4,fft,fro,tn -> f4,fro,tn" in line
    assert "--allow-baseline-mismatch" in line
    forced = run("check", SAMPLE, "--baseline", str(certified_baseline), "--allow-baseline-mismatch",
                 "--max-increase", "1000%", "--format", "json")
    assert forced.exit_code == 0
    report = json.loads(forced.stdout)
    assert "LIP030" in {f["code"] for f in report["findings"]}
    assert report["baseline"]["model_sha256"] == report["model"]["sha256"]


def test_same_settings_compare_and_show_both_sha256(certified_baseline, tmp_path):
    res = run("check", SAMPLE, "--method", "certified", "--no-attained", "--baseline", str(certified_baseline),
              "--format", "json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["baseline"]["model_sha256"] and report["model"]["sha256"]
    assert abs(report["baseline"]["increase"]) < 1e-9
    # another lipaudit version: a note, not an error
    data = json.loads(certified_baseline.read_text())
    data["tool"]["version"] = "0.0.1"
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    res = run("check", SAMPLE, "--method", "certified", "--no-attained", "--baseline", str(old), "--format", "json")
    assert res.exit_code == 0
    assert "LIP031" in {f["code"] for f in json.loads(res.stdout)["findings"]}


def test_basis_differences_name_each_setting():
    report = {"settings": {"method": "tn", "compare": [], "seed": 0, "until": None},
              "model": {"input_shape": [1, 3, 32, 32], "outputs": ["logits"]}, "tool": {"version": "1"}}
    same = basis(report)
    assert differences(same, same) == []
    other = json.loads(json.dumps(report))
    other["model"]["input_shape"] = [1, 3, 64, 64]
    other["model"]["outputs"] = ["feat"]
    other["settings"]["input_range"] = [0, 1]
    diffs = differences(basis(report), basis(other))
    assert "input shape: 1x3x32x32 -> 1x3x64x64" in diffs
    assert "certified outputs: logits -> feat" in diffs
    assert any(d.startswith("input domain") for d in diffs)
    version = json.loads(json.dumps(report))
    version["tool"]["version"] = "2"
    assert differences(basis(report), basis(version)) == []


def test_max_increase_without_baseline_is_a_usage_error():
    res = run("check", SAMPLE, "--max-increase", "5%")
    assert res.exit_code == 2 and "--max-increase needs --baseline" in res.stderr


# --- config -------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ('max-lipschitz = "abc"', "[tool.lipaudit] max-lipschitz = 'abc': expected a number"),
    ("seed = 1.5", "[tool.lipaudit] seed = 1.5: expected an integer"),
    ('method = "[bold]fast[/bold]"', "[tool.lipaudit] method = '[bold]fast[/bold]': expected one of tn, f4, fro, certified"),
    ('format = "xml"', "expected one of table, json, sarif, github, junit"),
    ("wide = 1", "[tool.lipaudit] wide = 1: expected true or false"),
    ("max-layer-norm = true", "expected a number"),
    ("bogus = 1\nother = 2", "unknown [tool.lipaudit] key(s) bogus, other"),
    ("trust-pickle = true", "trust-pickle is not allowed in a config file"),
    ('compare = "bogus"', "[tool.lipaudit] compare"),
    ('input-shape = "1,a"', "[tool.lipaudit] input-shape '1,a'"),
    ('max-increase = "lots"', "[tool.lipaudit] max-increase 'lots'"),
    ("output = 5", "[tool.lipaudit] output = 5: expected a list of strings or a string"),
    ("ignore = true", "[tool.lipaudit] ignore = True: expected a list of strings or a string"),
    ("input-shape = [1, 3, 8, 8]", "[tool.lipaudit] input-shape = [1, 3, 8, 8]: expected a string"),
])
def test_config_type_errors_are_one_line_naming_the_key(tmp_path, monkeypatch, line, expected):
    (tmp_path / "pyproject.toml").write_text(f"[tool.lipaudit]\n{line}\n")
    monkeypatch.chdir(tmp_path)
    res = run("check", SAMPLE, "-q")
    assert res.exit_code == 2
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert expected in res.stderr


def test_config_values_are_defaults_and_flags_win(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.lipaudit]\ncompare = "fft"\nmax-lipschitz = 1.0\nformat = "json"\n'
                                             "max-increase = 0.05\n")
    monkeypatch.chdir(tmp_path)
    res = run("check", SAMPLE)
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["settings"]["compare"] == ["fft"]
    assert run("check", SAMPLE, "--max-lipschitz", "1e9").exit_code == 0


def test_config_errors_through_the_real_entry_point(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.lipaudit]\nmax-lipschitz = "[red]abc"\n')
    res = subprocess.run([sys.executable, "-m", "lipaudit", "check", SAMPLE], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "FORCE_COLOR": "1"})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "[red]abc" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    helptext = subprocess.run([sys.executable, "-m", "lipaudit", "check", "--help"], capture_output=True, text=True,
                              cwd=tmp_path)  # help never depends on a valid config
    assert helptext.returncode == 0 and "--max-lipschitz" in helptext.stdout


def test_a_waiver_that_matches_nothing_is_reported():
    rules = Suppressions(waivers=(Waiver("stem.0", "LIP002", "measured separately"),
                                  Waiver("renamed.layer", "LIP002", "old name")))
    kept, _ = apply(_findings(), rules)
    unused = [f for f in kept if f.code == "LIP032"]
    assert len(unused) == 1 and "'renamed.layer'" in unused[0].message and unused[0].severity == "info"
    kept, dropped = apply(_findings(), Suppressions(ignore=("LIP032",), waivers=rules.waivers))
    assert not any(f.code == "LIP032" for f in kept) and dropped["LIP032"] == 1
