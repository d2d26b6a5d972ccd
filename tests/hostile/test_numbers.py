"""Class 3: NaN and inf never pass: thresholds, certificates and baselines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lipaudit.baseline import number
from tests.conftest import SAMPLES
from tests.hostile.harness import invoke

SAMPLE = str(SAMPLES / "digits_cnn_bn.onnx")


@pytest.mark.parametrize("flag,value", [
    ("--max-lipschitz", "nan"), ("--max-lipschitz", "inf"), ("--max-lipschitz", "-1"), ("--max-lipschitz", "-inf"),
    ("--max-layer-norm", "nan"), ("--max-layer-norm", "-0.5"),
    ("--max-increase", "nan"), ("--max-increase", "nan%"), ("--max-increase", "-5%"), ("--max-increase", "inf"),
])
def test_bad_thresholds_are_usage_errors(tmp_path, monkeypatch, flag, value):
    extra = ["--baseline", "b.json"] if flag == "--max-increase" else []
    res = invoke(tmp_path, monkeypatch, "check", SAMPLE, flag, value, *extra, "--format", "json")
    assert flag in res.stderr and res.stdout == ""


def _inf_model(tmp_path, inf: bool = True):
    """A conv with an infinite weight: lipaudit reports its bounds as inf (``inf=False``: the finite twin)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((2, 1, 3, 3), dtype=np.float32)
    w[0, 0, 0, 0] = np.inf if inf else 2.0
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [numpy_helper.from_array(w, "w")])
    path = tmp_path / ("inf.onnx" if inf else "finite.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path.name


def _report(tmp_path, monkeypatch, name="base.json"):
    invoke(tmp_path, monkeypatch, "check", SAMPLE, "--json", name, "-q", code=0, outputs={name}, lines=1)
    return json.loads((tmp_path / name).read_text())


@pytest.mark.parametrize("gate", [["--max-lipschitz", "1e300"], ["--max-layer-norm", "1e300"], ["--baseline", "base.json"]])
def test_non_finite_certificate_fails_every_gate(tmp_path, monkeypatch, gate):
    finite = _inf_model(tmp_path, inf=False)
    invoke(tmp_path, monkeypatch, "check", finite, "--json", "base.json", "-q", code=0, outputs={"base.json"}, lines=1)
    model = _inf_model(tmp_path)
    res = invoke(tmp_path, monkeypatch, "check", model, *gate, "--format", "json", code=1, lines=0)
    report = json.loads(res.stdout)
    assert report["verdict"] == "fail"
    assert report["network"]["certified"]["value"] == "inf"  # JSON has no inf: the report writes the string


@pytest.mark.parametrize("value", ["inf", "nan", float("nan"), 0, -3.0, "abc", True, None, [1], "1e400"])
def test_bad_baseline_values_are_refused(tmp_path, monkeypatch, value):
    report = _report(tmp_path, monkeypatch)
    report["network"]["certified"]["value"] = value
    (tmp_path / "bad.json").write_text(json.dumps(report))  # json writes float nan as NaN, as other tools do
    res = invoke(tmp_path, monkeypatch, "check", SAMPLE, "--baseline", "bad.json", "--format", "json")
    assert "--baseline" in res.stderr
    assert json.loads(res.stdout)["verdict"] == "error"


@pytest.mark.parametrize("value", ["nan", "inf", -1, "x"])
def test_bad_baseline_layer_values_are_refused(tmp_path, monkeypatch, value):
    report = _report(tmp_path, monkeypatch)
    report["layers"][1]["values"]["certified"]["value"] = value
    (tmp_path / "bad.json").write_text(json.dumps(report))
    invoke(tmp_path, monkeypatch, "check", SAMPLE, "--baseline", "bad.json")


@pytest.mark.parametrize("content", ["", "{", "[]", '{"network": 5}', '{"network": {"certified": {}}}', "\xff\xfe"])
def test_malformed_baselines_are_refused(tmp_path, monkeypatch, content):
    (tmp_path / "bad.json").write_text(content, encoding="latin-1")
    invoke(tmp_path, monkeypatch, "check", SAMPLE, "--baseline", "bad.json")


def test_report_round_trips_inf(tmp_path, monkeypatch):
    model = _inf_model(tmp_path)
    invoke(tmp_path, monkeypatch, "check", model, "--json", "inf.json", "-q", code=0, outputs={"inf.json"}, lines=1)
    report = json.loads((tmp_path / "inf.json").read_text())
    assert number(report["network"]["certified"]["value"]) == math.inf
    assert all(number(v["value"]) == math.inf for v in report["layers"][0]["values"].values())
    assert math.isnan(number("nan")) and number("-inf") == -math.inf
    with pytest.raises(TypeError):
        number("12")  # the report never writes numbers as strings
