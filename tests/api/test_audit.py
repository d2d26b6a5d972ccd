"""The Python API: lipaudit.audit on a path, a ModelProto and an nn.Module; Report access; equality with the CLI."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lipaudit
from lipaudit.cli import app
from lipaudit.report.json_report import schema
from tests.conftest import SAMPLES

SAMPLE = str(SAMPLES / "digits_cnn_bn.onnx")


@pytest.fixture(scope="module")
def sample_report():
    return lipaudit.audit(SAMPLE, timings=False)


def test_cli_json_equals_api_dict(sample_report):
    res = CliRunner().invoke(app, ["check", SAMPLE, "--format", "json", "--no-timings"])
    assert res.exit_code == 0, res.stderr
    cli = json.loads(res.stdout)
    api = sample_report.to_dict()
    assert api == cli
    jsonschema.validate(api, schema())
    assert sample_report.to_json() == res.stdout


def test_cli_json_equals_api_dict_apart_from_timings_with_gate():
    res = CliRunner().invoke(app, ["check", SAMPLE, "--format", "json", "--max-lipschitz", "10", "--compare", "f4"])
    cli = json.loads(res.stdout)
    api = lipaudit.audit(SAMPLE, max_lipschitz=10, compare="f4").to_dict()
    for d in (cli, api):
        d.pop("elapsed_s"), d.pop("timings")
        for layer in d["layers"]:
            for v in layer["values"].values():
                v.pop("time_s")
    assert api == cli
    assert api["verdict"] == "fail" and res.exit_code == 1


def test_attribute_access_matches_dict(sample_report):
    d = sample_report.to_dict()
    net = sample_report.network
    assert net.certified.value == d["network"]["certified"]["value"]
    assert net.certified.kind == "upper" and net.certified.kind is lipaudit.values.Kind.UPPER
    assert net.tn.kind == d["network"]["tn"]["kind"]
    assert set(net) == set(d["network"]) and "exact" not in net
    with pytest.raises(AttributeError, match="present: "):
        net.exact
    assert [x.name for x in sample_report.layers] == [x["name"] for x in d["layers"]]
    for layer, raw in zip(sample_report.layers, d["layers"]):
        assert layer.op == raw["op"]
        assert layer.module == raw.get("module")
        assert layer.values["tn"].value == raw["values"]["tn"]["value"]
        assert layer.values["tn"].kind == raw["values"]["tn"]["kind"]
        assert layer.values["certified"].value >= layer.values["tn"].value * (1 - 1e-6) or layer.values["tn"].kind != "upper"
    assert [f.code for f in sample_report.findings] == [f["code"] for f in d["findings"]]
    assert sample_report.verdict == d["verdict"] == "pass"
    # a fresh copy each time: mutating it does not change the report
    d["verdict"] = "fail"
    assert sample_report.to_dict()["verdict"] == "pass"


def test_repr_html_renders(sample_report):
    html = sample_report._repr_html_()
    assert html.startswith("<div class='lipaudit-report'>") and html.endswith("</div>")
    assert "<body" not in html and "<html" not in html
    for layer in sample_report.layers:
        assert layer.name in html
    assert "verdict: PASS" in html
    assert "\nbody{" not in html  # CSS scoped to the report's div


def test_model_proto_equals_path(sample_report):
    import onnx

    proto = onnx.load(SAMPLE)
    before = proto.SerializeToString()
    r = lipaudit.audit(proto, timings=False)
    assert proto.SerializeToString() == before
    a, b = r.to_dict(), sample_report.to_dict()
    assert a["layers"] == b["layers"] and a["network"] == b["network"]
    assert a["model"]["path"].startswith("<onnx.ModelProto")
    assert a["model"]["sha256"] == b["model"]["sha256"]  # the same bytes as the file
    jsonschema.validate(a, schema())


def _bn_module(training: bool):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1, bias=False), torch.nn.BatchNorm2d(3))
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.25, 4.0)
        m[1].weight.uniform_(0.5, 2.0)
    m.train(training)
    return m


@pytest.mark.parametrize("training", [True, False])
def test_module_bn_audited_in_eval_mode_and_left_untouched(training):
    m = _bn_module(training)
    m[0].train(not training)  # mixed flags must survive too
    flags = [x.training for x in m.modules()]
    state = {k: v.clone() for k, v in m.state_dict().items()}
    r = lipaudit.audit(m, input_shape=(1, 2, 5, 5), timings=False)
    assert [x.training for x in m.modules()] == flags
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k]), k
    # a 1x1 conv with BN folded: the exact norm is the largest singular value of diag(gamma/sigma) W
    bn = m[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    w = m[0].weight.detach().numpy()[:, :, 0, 0]
    expected = np.linalg.svd(scale[:, None] * w, compute_uv=False)[0]
    assert r.layers[0].folded
    assert r.network.certified.value == pytest.approx(expected, rel=1e-5)
    assert r.network.certified.value >= expected
    assert r.model["format"] == "torch-module"


def test_module_needs_input_shape_and_errors_are_exported():
    m = _bn_module(False)
    with pytest.raises(lipaudit.InputShapeError, match="input_shape"):
        lipaudit.audit(m)
    with pytest.raises(lipaudit.UsageError):
        lipaudit.audit(m, input_shape=(1, 2, 5, 5), method="nope")
    with pytest.raises(lipaudit.UsageError, match="input.range"):
        lipaudit.audit(SAMPLE, input_range=(1, -1))
    with pytest.raises(lipaudit.ModelLoadError, match="no such file"):
        lipaudit.audit("does/not/exist.onnx")
    with pytest.raises(lipaudit.UsageError):
        lipaudit.audit(42)
    with pytest.raises(lipaudit.UsageError):
        lipaudit.audit(SAMPLE, max_lipschitz=float("nan"))
    for cls in (lipaudit.ModelLoadError, lipaudit.InputShapeError, lipaudit.UnsupportedOpError,
                lipaudit.UsageError, lipaudit.BaselineError, lipaudit.DataError, lipaudit.BaselineMismatch,
                lipaudit.BudgetError, lipaudit.OutputError):
        assert issubclass(cls, lipaudit.LipauditError) and cls.exit_code == 2 and cls.code.startswith("LIP")


def test_unsupported_op_raises_the_cli_class():
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Exp", ["x"], ["y"], name="the_exp")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    r = lipaudit.audit(proto)  # no certificate, but a report: the network says why
    assert r.network.unavailable and "the_exp" in r.network.unavailable
    with pytest.raises(AttributeError, match="the_exp"):
        r.network.certified


def test_progress_callback_is_called():
    calls = []
    lipaudit.audit(SAMPLE, progress=lambda done, total, name: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]


def test_memory_budget_raises_before_the_work():
    with pytest.raises(lipaudit.BudgetError, match="max-memory"):
        lipaudit.audit(SAMPLE, max_memory=1000)
    with pytest.raises(lipaudit.UsageError):
        lipaudit.audit(SAMPLE, max_memory="lots")
