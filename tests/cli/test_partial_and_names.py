"""Partial reports (no network certificate, every layer), --input-range on the CLI, module names, `lipaudit nodes`.

The model: a small nested torch network with a squeeze-excite gate (a product of
two input-dependent tensors), exported once by the dynamo exporter, whose node
names (``node_Conv_14``) say nothing while the metadata holds the module paths.
"""

from __future__ import annotations

import json

import pytest

from tests.cli.test_check import lipaudit, run, validate


@pytest.fixture(scope="module")
def se_model(tmp_path_factory):
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)
            self.act, self.gate = nn.ReLU(), nn.Hardsigmoid()

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardswish())
            self.se = SE(8)

        def forward(self, x):
            return self.se(self.conv(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(Block())
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("se") / "se.onnx"
    torch.onnx.export(Net().eval(), (torch.randn(1, 3, 8, 8),), str(path), dynamo=True, verbose=False)
    return str(path)


def _json(res):
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    validate(report)
    return report


def test_module_names_in_json_table_findings_and_errors(se_model):
    report = _json(run("check", se_model, "--format", "json"))
    modules = {layer["name"]: layer.get("module") for layer in report["layers"]}
    assert "features.0.se.fc1" in modules.values() and "head" in modules.values()
    assert all(not name.startswith("features") for name in modules)  # the dynamo names say nothing by themselves
    lip101 = next(f for f in report["findings"] if f["code"] == "LIP101")
    assert lip101["module"] == "features.0.se" and "features.0.se" in lip101["message"]
    unavailable = report["network"]["unavailable"]
    assert unavailable["reasons"][0]["op"] == "Mul" and unavailable["reasons"][0]["module"] == "features.0.se"
    assert "--input-range" in unavailable["remedy"] and "--until" in unavailable["remedy"]
    table = run("check", se_model)
    assert table.exit_code == 0 and "features.0.se.fc1" in table.stderr and "module" in table.stderr
    # an undecidable gate: exit 2, and the one error line names the module
    res = lipaudit("check", se_model, "--max-lipschitz", "10")
    assert res.returncode == 2 and "features.0.se" in res.stderr and "Traceback" not in res.stderr


def test_nodes_lists_names_ops_shapes_and_modules(se_model):
    res = run("nodes", se_model)
    assert res.exit_code == 0, res.stderr
    for text in ("node_mul", "Mul", "features.0.se.gate", "HardSigmoid", "1x8x8x8", "--until"):
        assert text in res.stdout, text
    data = json.loads(run("nodes", se_model, "--format", "json").stdout)
    mul = next(n for n in data["nodes"] if n["op"] == "Mul")
    assert mul["module"] == "features.0.se" and mul["outputs"][0]["shape"] == [1, 8, 8, 8]
    assert data["inputs"][0]["shape"] == [1, 3, 8, 8]
    # a node name from `nodes` works with --until
    before = next(n["name"] for n in data["nodes"] if n["op"] == "HardSwish")
    report = _json(run("check", se_model, "--until", before, "--format", "json"))
    assert report["network"]["certified"]["kind"] == "upper" and "valid_on" not in report["network"]["certified"]
    assert run("nodes", "does/not/exist.onnx").exit_code == 2


def test_partial_report_works_with_every_output_and_method(se_model, tmp_path):
    pytest.importorskip("matplotlib")
    out_json, out_html, out_png = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "r.png"
    res = run("check", se_model, "--method", "certified", "--compare", "exact,fro", "--json", str(out_json),
              "--html", str(out_html))
    assert res.exit_code == 0, res.stderr
    assert "no network certificate" in res.stderr and "LIP013" in res.stderr
    report = json.loads(out_json.read_text())
    validate(report)
    assert report["verdict"] == "pass" and len(report["layers"]) == 4
    assert all("exact" in layer["values"] and "fro" in layer["values"] for layer in report["layers"])
    assert "no network certificate" in out_html.read_text()
    res = run("plot", str(out_json), "-o", str(out_png))
    assert res.exit_code == 0 and out_png.stat().st_size > 0
    # the layer gate needs no network: decided; network gates cannot be: exit 2
    assert run("check", se_model, "--max-layer-norm", "1000").exit_code == 0
    assert run("check", se_model, "--max-layer-norm", "0.001").exit_code == 1
    assert run("check", se_model, "--max-lipschitz", "1e9").exit_code == 2
    assert run("check", se_model, "--baseline", str(out_json), "--max-increase", "5%").exit_code == 2


def test_input_range_certifies_the_gate_on_the_domain_only(se_model, tmp_path):
    report = _json(run("check", se_model, "--input-range", "-3,3", "--format", "json"))
    cert = report["network"]["certified"]
    assert cert["kind"] == "upper" and cert["valid_on"] == [-3.0, 3.0]
    assert report["settings"]["input_range"] == [-3.0, 3.0]
    lip012 = next(f for f in report["findings"] if f["code"] == "LIP012")
    assert "[-3, 3]" in lip012["message"] and "not globally" in lip012["message"]
    assert report["domain_factors"][0]["op"] == "Mul" and report["domain_factors"][0]["module"] == "features.0.se"
    table = run("check", se_model, "--input-range", "-3,3")
    assert "on the input domain [-3, 3] only" in table.stderr
    quiet = run("check", se_model, "--input-range", "-3,3", "-q")
    assert "on [-3, 3] only" in quiet.stderr
    # a smaller domain never gives a larger bound
    small = _json(run("check", se_model, "--input-range", "-1,1", "--format", "json"))["network"]["certified"]
    assert small["value"] <= cert["value"]
    # per-channel and named forms
    per = _json(run("check", se_model, "--input-range", "-1,1;-2,2;-3,3", "--format", "json"))["network"]["certified"]
    assert per["valid_on"] == [[-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]] and per["value"] <= cert["value"]
    assert _json(run("check", se_model, "--input-range", "imagenet", "--format", "json"))["network"]["certified"]


@pytest.mark.parametrize("bad", ["3", "3,-3", "a,b", "-1,1;-2,2", "nan,1", "-inf,1"])
def test_bad_input_range_is_a_usage_error(se_model, bad):
    res = run("check", se_model, f"--input-range={bad}")
    assert res.exit_code == 2 and "--input-range" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert run("check", se_model, f"--input-range={bad}", "--format", "json").exit_code == 2


def test_input_range_on_weights_only_says_it_has_no_effect():
    from tests.conftest import shared_model

    report = _json(run("check", shared_model("resnet_2b.pth"), "--input-range", "-1,1", "--format", "json"))
    lip008 = next(f for f in report["findings"] if f["code"] == "LIP008")
    assert "--input-range has no effect" in lip008["message"] and "certified" not in report["network"]
