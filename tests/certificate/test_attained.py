"""The attained value: a verified lower bound, below the true constant and the certificate.

``max_D ||J(D)||`` over all slope patterns is at least the true Lipschitz constant, so
``attained <= pattern maximum`` and ``attained <= certified`` must hold; on a linear
network the attained value must find the true norm.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from lipaudit.certificate.attained import AttainedSettings, AttainedUnavailable, attained  # noqa: E402
from tests.certificate import nets  # noqa: E402

FAST = AttainedSettings(restarts=2, steps=6, seed=0)
HAS_ONNX2TORCH = importlib.util.find_spec("onnx2torch") is not None


@pytest.mark.parametrize("act", ["relu", "leaky", "silu"])
def test_attained_is_below_every_upper_bound(act, tmp_path):
    from tests.certificate.test_expansion import certify

    model = nets.randomise(nets.Chain(n=5, act=act), seed=7)
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    worst = nets.max_pattern_norm(model, x, starts=2, rounds=3)
    cert = certify(model, 5, tmp_path)
    found = attained(model.float(), shape=(1, 1, 5, 5), converter="torch module", settings=FAST)
    assert 0 < found.value <= worst * (1 + 1e-9) and found.value <= cert.value
    assert found.value <= found.jacobian_norm * 1.05  # a secant, below the local Jacobian norm it came from


def test_attained_finds_the_norm_of_a_linear_network():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Flatten(),
                          nn.Linear(2 * 3 * 3, 4)).double()
    nets.randomise(model, seed=5)
    model = model.float().double()  # the float32 weights are the model; its exact norm in float64
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    true = nets.jac_norm(model, x)[0]
    found = attained(model.float(), shape=(1, 1, 6, 6), converter="torch module", settings=FAST)
    assert true * (1 - 1e-4) <= found.value <= true * (1 + 1e-9)


def test_attained_stays_in_the_box():
    model = nets.randomise(nets.Chain(n=4, act="relu"), seed=2).float()
    low, high = np.full((1, 1, 4, 4), -0.5), np.full((1, 1, 4, 4), 0.25)
    found = attained(model, shape=(1, 1, 4, 4), converter="torch module",
                     settings=AttainedSettings(restarts=1, steps=4, low=low, high=high))
    assert found.value >= 0


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch not installed")
def test_onnx_model_is_converted_and_checked_against_onnxruntime(tmp_path):
    import onnx

    from lipaudit.certificate.attained import onnx_to_torch
    from tests.conftest import export_onnx

    model = nets.randomise(nets.Residual("relu"), seed=4).float()
    path = export_onnx(model, torch.zeros(1, 1, 6, 6), tmp_path / "r.onnx")
    proto = onnx.load(path)
    found = attained(onnx_to_torch(proto), shape=(1, 1, 6, 6), converter="onnx2torch", settings=FAST,
                     onnx_model=proto, input_name="input")
    reference = attained(model, shape=(1, 1, 6, 6), converter="torch module", settings=FAST)
    assert found.value == pytest.approx(reference.value, rel=1e-3)


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch not installed")
def test_a_converted_model_that_disagrees_is_refused(tmp_path):
    import onnx

    from lipaudit.certificate.attained import onnx_to_torch
    from tests.conftest import export_onnx

    model = nets.randomise(nets.Chain(n=4, act="relu"), seed=1).float()
    proto = onnx.load(export_onnx(model, torch.zeros(1, 1, 4, 4), tmp_path / "c.onnx"))
    converted = onnx_to_torch(proto)
    with torch.no_grad():
        for p in converted.parameters():
            p.mul_(1.5)  # a converter bug: the torch module no longer computes the ONNX model
    with pytest.raises(AttainedUnavailable, match="disagrees with onnxruntime"):
        attained(converted, shape=(1, 1, 4, 4), converter="onnx2torch", settings=FAST, onnx_model=proto,
                 input_name="input")


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch not installed")
def test_cli_reports_attained_gap_and_switches(tmp_path):
    from typer.testing import CliRunner

    from lipaudit.cli import app

    runner = CliRunner()
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["check", "sample_models/digits_cnn_bn.onnx", "--method", "certified", "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    att, cert = report["network"]["attained"], report["network"]["certified"]
    assert att["kind"] == "lower" and 0 < att["value"] <= cert["value"]
    assert att["gap"] == pytest.approx(cert["value"] / att["value"])
    assert cert["value"] <= cert["product"]
    res = runner.invoke(app, ["check", "sample_models/digits_cnn_bn.onnx", "--method", "certified", "--no-attained",
                              "--json", str(out)])
    assert res.exit_code == 0 and "attained" not in json.loads(out.read_text())["network"]


def test_a_model_without_a_converter_gets_a_finding_not_a_failure(tmp_path, monkeypatch):
    """The attained search failing never fails the audit: a LIP040 finding says why."""
    from lipaudit.certificate import attained as module
    from lipaudit.runner import CheckOptions, run_check

    def broken(*args, **kwargs):
        raise AttainedUnavailable("onnx2torch cannot convert this model (test)")

    monkeypatch.setattr(module, "attained_for", broken)
    report = run_check("sample_models/digits_cnn_bn.onnx", CheckOptions(method="certified"))
    assert report["verdict"] == "pass" and "attained" not in report["network"]
    assert any(f["code"] == "LIP040" and "cannot convert" in f["message"] for f in report["findings"])


def test_a_torch_module_is_searched_directly():
    """In-memory modules (like .pt2/--arch inputs) keep the module: no conversion, no onnxruntime check."""
    from lipaudit.runner import CheckOptions, run_check

    model = nets.randomise(nets.Chain(n=5, act="relu"), seed=3).float()
    report = run_check(model, CheckOptions(method="certified", input_shape=(1, 1, 5, 5)))
    att = report["network"]["attained"]
    assert att["search"]["converter"].startswith("torch module")
    assert 0 < att["value"] <= report["network"]["certified"]["value"]
