"""Machine formats for CI: SARIF 2.1.0, GitHub annotations, JUnit XML.

Golden snapshots are rendered from a stored report (deterministic); live runs check that every
format gives the same exit code and the same stderr, and validate against the official schemas
shipped in tests/data (nothing is downloaded).
Regenerate after a reviewed change: ``UPDATE_GOLDEN=1 python -m pytest tests/cli/test_ci_formats.py``.
"""

from __future__ import annotations

import json
import os
import re

import jsonschema
import pytest
from typer.testing import CliRunner

from lipaudit.cli import app
from lipaudit.findings import CODES
from lipaudit.report.github import render_github
from lipaudit.report.junit import render_junit
from lipaudit.report.sarif import render_sarif
from tests.conftest import ROOT, SAMPLES

GOLDEN = ROOT / "tests" / "golden"
DATA = ROOT / "tests" / "data"
GATES = GOLDEN / "digits_cnn_bn.gates.json"  # LIP001, LIP002 x3 (one waived), LIP006
SAMPLE = "sample_models/digits_cnn_bn.onnx"
ANNOTATION = re.compile(r"^::(error|warning|notice) file=[^,:\n]+,title=LIP\d{3} [a-z-]+( \(waived\))?::[^\n]+$")


def validate_sarif(text: str) -> dict:
    log = json.loads(text)
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(log)
    return log


def validate_junit(text: str):
    xmlschema = pytest.importorskip("xmlschema")
    import xml.etree.ElementTree as ET

    xmlschema.XMLSchema(str(DATA / "junit-10.xsd")).validate(text)
    return ET.fromstring(text)


def validate_github(text: str) -> list[str]:
    lines = text.splitlines()
    for line in lines:
        assert ANNOTATION.match(line), line
    return lines


def _golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.fixture
def gates_report(monkeypatch):
    monkeypatch.chdir(ROOT)  # model paths are relative to the repository, as in CI
    return json.loads(GATES.read_text())


def test_sarif_golden_and_schema(gates_report):
    text = render_sarif([gates_report])
    log = validate_sarif(text)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CODES)  # one rule per finding code
    lip001 = rules[0]
    assert lip001["name"] == "network-bound-exceeded"
    assert lip001["fullDescription"]["text"] == CODES["LIP001"].explanation
    assert lip001["helpUri"].endswith("docs/findings.md#lip001-network-bound-exceeded")
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["LIP001", "LIP002", "LIP002", "LIP002", "LIP006"]
    assert [r["level"] for r in results] == ["error", "error", "error", "error", "note"]
    loc = results[1]["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == SAMPLE
    assert loc["physicalLocation"]["region"] == {"startLine": 1}  # GitHub code scanning needs a region
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == "/features/features.0/Conv"
    assert results[1]["suppressions"][0]["justification"] == "stem measured separately [see ticket 12]"
    assert "suppressions" not in results[2]
    # the working directory's URI depends on the machine: not part of the snapshot
    run["originalUriBaseIds"]["%SRCROOT%"]["uri"] = "file:///REPO/"
    _golden("digits_cnn_bn.sarif", json.dumps(log, indent=2) + "\n")


def test_github_golden(gates_report):
    text = render_github([gates_report])
    lines = validate_github(text)
    assert lines[0].startswith(f"::error file={SAMPLE},title=LIP001 network-bound-exceeded::certified network bound")
    assert lines[1].startswith("::notice ") and "(waived)" in lines[1] and "stem measured separately" in lines[1]
    assert sum(line.startswith("::error") for line in lines) == 3
    _golden("digits_cnn_bn.github.txt", text)


def test_github_escapes_what_would_break_a_command(gates_report):
    gates_report["findings"][2]["message"] = "line one\n::error::injected 100%"
    gates_report["model"]["path"] = "dir,with:odd/model.onnx"
    lines = validate_github(render_github([gates_report]))
    assert len(lines) == 5
    assert "%0A::error::injected 100%25" in lines[2]
    gates_report["findings"][3]["message"] = "bell\x07 and escape \x1b[31mred"
    line = validate_github(render_github([gates_report]))[3]
    assert "\x1b" not in line and "\x07" not in line
    assert "file=dir%2Cwith%3Aodd/model.onnx," in lines[2]


def test_github_paths_are_repository_relative(gates_report):
    gates_report["model"]["path"] = str(ROOT / SAMPLE)  # an absolute path inside the working directory
    assert validate_github(render_github([gates_report]))[0].startswith(f"::error file={SAMPLE},")


def test_junit_golden_and_schema(gates_report):
    text = render_junit([gates_report])
    root = validate_junit(text)
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert list(cases) == ["audit", "max-lipschitz <= 100", "max-layer-norm <= 5",
                           "soundness (no TN value below the exact norm)"]
    assert cases["audit"].find("failure") is None and cases["audit"].find("error") is None
    assert cases["max-lipschitz <= 100"].find("failure").get("type") == "LIP001"
    failure = cases["max-layer-norm <= 5"].find("failure")
    assert "features.0" not in failure.text  # waived: not a failure...
    assert "features.0" in cases["max-layer-norm <= 5"].find("system-out").text  # ...but listed
    assert root.get("failures") == "2" and root.get("errors") == "0"
    _golden("digits_cnn_bn.junit.xml", text)


def test_junit_error_run_is_an_error_and_gates_are_skipped(gates_report):
    error_report = {**gates_report, "verdict": "error", "layers": [], "network": {},
                    "findings": [{"code": "LIP100", "name": "model-unreadable", "severity": "error",
                                  "message": "x.onnx: not an ONNX model \x1b[31m"}]}
    root = validate_junit(render_junit([error_report, gates_report]))
    suites = root.findall("testsuite")
    assert len(suites) == 2  # one per model
    assert suites[0].find("testcase").find("error").get("type") == "LIP100"
    assert suites[0].get("skipped") == "3"
    assert root.get("errors") == "1"


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "junit"])
def test_every_format_same_exit_code_and_stderr(fmt, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    failing = runner.invoke(app, ["check", SAMPLE, "--max-lipschitz", "1", "--format", fmt])
    assert failing.exit_code == 1
    assert failing.stderr == ""  # machine formats: stdout only, like json
    broken = runner.invoke(app, ["check", "missing.onnx", "--format", fmt])
    assert broken.exit_code == 2
    assert len(broken.stderr.strip().splitlines()) == 1 and broken.stderr.startswith("error:")
    out = failing.stdout
    if fmt == "sarif":
        assert [r["ruleId"] for r in validate_sarif(out)["runs"][0]["results"] if r["level"] == "error"] == ["LIP001"]
        log = validate_sarif(broken.stdout)
        assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False
    elif fmt == "github":
        assert validate_github(out)[0].startswith("::error file=sample_models/digits_cnn_bn.onnx,title=LIP001")
        assert validate_github(broken.stdout)[0].startswith("::error file=missing.onnx,title=LIP100 model-unreadable::")
    elif fmt == "junit":
        assert validate_junit(out).get("failures") == "1"
        assert validate_junit(broken.stdout).get("errors") == "1"


def test_several_models_one_sarif_run_and_one_junit_suite_each(monkeypatch):
    monkeypatch.chdir(ROOT)
    models = [SAMPLE, "sample_models/mnist_spectral_norm.onnx"]
    runner = CliRunner()
    sarif = runner.invoke(app, ["check", *models, "--format", "sarif", "--max-lipschitz", "1"])
    assert sarif.exit_code == 1
    log = validate_sarif(sarif.stdout)
    assert {a["location"]["uri"] for a in log["runs"][0]["artifacts"]} == set(models)
    junit = runner.invoke(app, ["check", *models, "--format", "junit"])
    assert junit.exit_code == 0
    assert len(validate_junit(junit.stdout).findall("testsuite")) == 2


@pytest.mark.parametrize("name", ["digits_cnn_bn.json", "digits_cnn_bn.gates.json"])
def test_golden_json_reports_are_valid(name):
    from lipaudit.report.json_report import schema

    jsonschema.Draft202012Validator(schema()).validate(json.loads((GOLDEN / name).read_text()))


def test_findings_doc_has_a_section_per_code():
    from lipaudit.findings import findings_markdown

    text = (ROOT / "docs" / "findings.md").read_text()
    assert text == findings_markdown(), "regenerate docs/findings.md from lipaudit.findings.findings_markdown()"
    for code in CODES.values():
        assert f"## {code.code} {code.name}\n" in text
