"""The human table fits the terminal: rendered with rich at a fixed width, no number is ever cut."""

from __future__ import annotations

import copy
import json
import re

import pytest
from typer.testing import CliRunner

from lipaudit.cli import app
from lipaudit.report.layout import shorten
from lipaudit.report.table import _value_text, grouped_findings, render_table, value_columns
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"


def _report(n_layers: int = 4, compare=(), long_names: bool = False) -> dict:
    """The golden report, grown to ``n_layers`` (numbers of every width) and optional compared methods."""
    base = json.loads((GOLDEN / "digits_cnn_bn.json").read_text())
    report = copy.deepcopy(base)
    report["settings"]["compare"] = list(compare)
    layers = []
    for i in range(n_layers):
        layer = copy.deepcopy(base["layers"][i % len(base["layers"])])
        scale = 10.0 ** ((i % 9) - 3)  # 0.001 ... 100000: every number format
        name = layer["name"] + (f"/block{i}/very_long_module_name_{'x' * (i % 40)}" if long_names else f"_{i}")
        layer["name"] = name
        for m in ["exact", *compare]:
            if m not in layer["values"]:
                layer["values"][m] = dict(layer["values"]["certified"], method=m, kind="exact" if m == "exact" else "upper")
        for v in layer["values"].values():
            v["value"] = float(v["value"]) * scale
        if "exact" in compare:
            layer["ratios"] = {f"{m}/exact": 1.234 for m in layer["values"] if m != "exact"}
        layers.append(layer)
    report["layers"] = layers
    return report


def _numbers(report, shown) -> list[str]:
    cols = [c for c in value_columns(report) if c in shown]
    return [_value_text(layer["values"].get(c)) for layer in report["layers"] for c in cols]


@pytest.mark.parametrize("n_layers, compare, long_names", [
    (4, (), False), (12, ("exact", "f4"), False), (30, ("exact", "f4", "fro", "fft"), True), (200, (), True),
])
def test_80_columns_no_number_cut(n_layers, compare, long_names):
    report = _report(n_layers, compare, long_names)
    text = render_table(report, width=80)
    table = text.split("kinds:")[0]
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = [line for line in table.splitlines() if line.startswith("│")]
    cells = [c.strip() for line in rows for c in line.strip("│").split("│")]
    shown = [h.strip() for h in table.splitlines()[2].strip("┃").split("┃")]
    assert {"tn", "certified"} <= set(shown) and ("exact" in shown or "exact" not in compare)
    for number in _numbers(report, shown):
        assert number in cells, f"{number!r} cut or missing"
    for method in set(value_columns(report)) - set(shown):  # a column left out is named, never cut
        assert method in text.split("not shown at this width:")[1]
    assert not any("…" in c and re.search(r"\d\.\d", c) for c in cells)  # no abbreviated number
    # every layer's name takes at most two lines: rows = layers + continuation lines <= 2 x layers
    assert len(rows) <= 2 * n_layers


def test_low_priority_columns_go_first_and_wide_shows_all():
    report = _report(12, ("exact",))
    narrow = render_table(report, width=80)
    header = narrow.splitlines()[2]
    assert "time" not in header and "share" not in header
    assert "certified" in header and "exact" in header and "tn" in header
    assert "not shown at this width: time, share" in narrow.replace("\n", " ")
    wide = render_table(report, width=80, wide=True)
    whole = wide.splitlines()[2]
    for column in ("time", "share", "stride", "BN folded", "kernel", "tn/exact"):
        assert column in whole
    assert "not shown" not in wide


def test_long_names_keep_start_and_end_in_two_lines():
    assert shorten("abcdefghij", 5) == "abcdefghij"
    short = shorten("/encoder/layer.11/attention/self/query/MatMul_with_a_long_tail", 10)
    assert len(short) == 20 and short.startswith("/encoder/") and short.endswith("long_tail") and "…" in short


def test_repeated_findings_are_grouped_in_the_table_but_kept_in_json():
    findings = [{"code": "LIP007", "name": "hopm-not-converged", "severity": "warning", "node": f"conv{i}",
                 "message": f"layer conv{i}: HOPM stopped at 300 iterations"} for i in range(12)]
    findings.append({"code": "LIP002", "name": "layer-norm-exceeded", "severity": "error", "node": "stem",
                     "message": "layer stem certified norm 9 > 1", "waived": True, "reason": "known [stem]"})
    rows = grouped_findings(findings)
    assert len(rows) == 2
    code, severity, text = rows[0]
    assert code == "LIP007" and "x12 layers" in text and "conv0, conv1, conv2 and 9 more" in text
    assert rows[1][1] == "waived" and "known [stem]" in rows[1][2]
    report = _report(4)
    report["findings"] = findings
    text = render_table(report, width=200)
    assert text.count("LIP007") == 1 and "known [stem]" in text


def test_cli_width_wide_and_verbose(monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    res = runner.invoke(app, ["check", "sample_models/mnist_resnet.onnx", "-v"], env={"COLUMNS": "80"})
    assert res.exit_code == 0
    assert max(len(line) for line in res.stderr.splitlines() if not line.startswith("INFO ")) <= 80
    assert "per-layer details" in res.stderr and "iterations" in res.stderr and "converged" in res.stderr
    assert "INFO lipaudit.runner: loaded sample_models/mnist_resnet.onnx" in res.stderr  # -v turns on logging
    wide = runner.invoke(app, ["check", "sample_models/mnist_resnet.onnx", "--wide"], env={"COLUMNS": "80"})
    assert "share" in wide.stderr and "time" in wide.stderr
    assert "INFO" not in wide.stderr
