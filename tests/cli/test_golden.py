"""Golden snapshots of the JSON report and the table for one sample model.

Regenerate after a reviewed change: ``UPDATE_GOLDEN=1 python -m pytest tests/cli/test_golden.py``.
"""

from __future__ import annotations

import json
import math
import os

from typer.testing import CliRunner

from lipaudit.cli import app
from lipaudit.report.table import render_table
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
MODEL = "sample_models/digits_cnn_bn.onnx"


def _live_report():
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        res = CliRunner().invoke(app, ["check", MODEL, "--format", "json", "--no-timings"])
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _approx_equal(a, b, path="$"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _approx_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: length"
        for i, (x, y) in enumerate(zip(a, b)):
            _approx_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_json_golden():
    live = _live_report()
    live["model"]["sha256"] = "<sha256>"
    path = GOLDEN / "digits_cnn_bn.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(live, indent=2, sort_keys=True) + "\n")
    _approx_equal(live, json.loads(path.read_text()))


def test_table_golden():
    report = json.loads((GOLDEN / "digits_cnn_bn.json").read_text())
    text = render_table(report, width=160)
    path = GOLDEN / "digits_cnn_bn.table.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
