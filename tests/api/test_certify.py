"""lipaudit certify / lipaudit.certify: accuracies recomputed independently from the model's own logits."""

from __future__ import annotations

import copy
import json
import math

import jsonschema
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lipaudit
from lipaudit.cli import app
from lipaudit.report.json_report import schema


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
    net.train()  # certify must use eval semantics and leave the mode alone
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 1, 6, 6)).astype(np.float32) * 0.5
    ref = copy.deepcopy(net).eval()
    with torch.no_grad():
        logits = ref(torch.from_numpy(x)).numpy().astype(np.float64)
    # labels: mostly the model's prediction (so some samples certify), some wrong
    y = logits.argmax(1)
    y[::7] = (y[::7] + 1) % 5
    folder = tmp_path_factory.mktemp("certify")
    onnx_path = folder / "net.onnx"
    torch.onnx.export(copy.deepcopy(net).eval(), (torch.zeros(1, 1, 6, 6),), str(onnx_path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    data = folder / "data.npz"
    np.savez(data, x=x, y=y)
    return net, x, y, logits, str(onnx_path), str(data), folder


def expected(logits, y, L, eps):
    """Straightforward per-sample recomputation."""
    acc_clean, cert = 0, {e: 0 for e in eps}
    radii = []
    for z, label in zip(logits, y):
        order = sorted(range(len(z)), key=lambda i: -z[i])
        margin = z[order[0]] - z[order[1]]
        radius = margin / (math.sqrt(2) * L)
        ok = order[0] == label
        acc_clean += ok
        radii.append(radius if ok else 0.0)
        for e in eps:
            cert[e] += ok and radius > e
    n = len(y)
    return acc_clean / n, {e: c / n for e, c in cert.items()}, np.array(radii)


def test_module_certify_matches_recomputation(setup):
    net, x, y, logits, _, _, _ = setup
    flags = [m.training for m in net.modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    eps = [0.0, 0.01, 0.05, 0.1]
    r = lipaudit.certify(net, x, y, eps=eps, batch_size=64)
    assert [m.training for m in net.modules()] == flags
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    rob = r.robustness
    L = rob.lipschitz["value"]
    assert rob.lipschitz["kind"] in ("upper", "exact") and rob.lipschitz["composition"] == "certified"
    assert L == lipaudit.audit(net, input_shape=(1, 1, 6, 6), method="certified").network.certified.value
    clean, cert, radii = expected(logits, y, L, eps)
    assert rob.n == len(y)
    assert rob.clean_accuracy == pytest.approx(clean, abs=1e-12)
    for e in eps:
        assert rob.at(e) == pytest.approx(cert[e], abs=1e-12)
    assert 0 < rob.at(0.01) < clean  # the test data exercises both outcomes
    np.testing.assert_allclose(rob.certified_radii, radii, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(rob.radius_quantiles["0.5"], np.quantile(radii, 0.5), rtol=1e-4, atol=1e-7)
    jsonschema.validate(r.to_dict(), schema())


def test_radius_is_sound_against_attacks(setup):
    """No perturbation inside the certified radius flips a prediction (a crude random-direction attack)."""
    net, x, y, logits, _, _, _ = setup
    r = lipaudit.certify(net, x[:60], y[:60], eps=[0.01])
    ref = copy.deepcopy(net).eval()
    rng = np.random.default_rng(1)
    for i in range(60):
        rad = r.robustness.radii[i]
        d = rng.normal(size=(32, *x.shape[1:])).astype(np.float32)
        d *= 0.999 * rad / np.linalg.norm(d.reshape(32, -1), axis=1).reshape(32, 1, 1, 1)
        with torch.no_grad():
            pred = ref(torch.from_numpy(x[i:i + 1] + d)).argmax(1).numpy()
        assert (pred == r.robustness.predictions[i]).all()


def test_cli_certify_json_table_and_gate(setup, tmp_path):
    net, x, y, logits, onnx_path, data, _ = setup
    runner = CliRunner()
    res = runner.invoke(app, ["certify", onnx_path, "--data", data, "--eps", "0.01,0.05", "--format", "json",
                              "--json", str(tmp_path / "r.json"), "--batch-size", "50"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    jsonschema.validate(report, schema())
    assert json.loads((tmp_path / "r.json").read_text()) == report
    rob = report["robustness"]
    clean, cert, _ = expected(logits, y, float(rob["lipschitz"]["value"]), [0.01, 0.05])
    assert rob["clean_accuracy"] == pytest.approx(clean) and rob["n"] == len(y)
    assert rob["certified_accuracy"] == pytest.approx({"0.01": cert[0.01], "0.05": cert[0.05]})
    # table on stderr
    res = runner.invoke(app, ["certify", onnx_path, "--data", data, "--eps", "0.01,0.05"])
    assert res.exit_code == 0 and "certified accuracy" in res.stderr and f"{cert[0.01]:.4f}" in res.stderr
    # the gate: just above and just below the achieved accuracy
    need = cert[0.01]
    res = runner.invoke(app, ["certify", onnx_path, "--data", data, "--min-certified-accuracy", f"{need + 0.01}@0.01"])
    assert res.exit_code == 1 and "LIP020" in res.stderr
    res = runner.invoke(app, ["certify", onnx_path, "--data", data, "--min-certified-accuracy", f"{need}@0.01"])
    assert res.exit_code == 0, res.stderr


def test_cli_plot(setup, tmp_path):
    pytest.importorskip("matplotlib")
    _, _, _, _, onnx_path, data, _ = setup
    out = tmp_path / "curve.png"
    res = CliRunner().invoke(app, ["certify", onnx_path, "--data", data, "--plot", str(out), "-q"])
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case, message", [
    ("shape", "shape"),
    ("labels_high", "labels must be in [0, 5)"),
    ("labels_negative", "labels must be in"),
    ("nan", "NaN"),
    ("missing_y", "needs arrays 'x' and 'y'"),
    ("pickled", "pickled"),
    ("length", "one integer label per sample"),
    ("float_labels", "integer"),
    ("not_npz", "not a readable .npz"),
])
def test_bad_data_exit_2_one_line(setup, tmp_path, case, message):
    _, x, y, _, onnx_path, _, _ = setup
    path = tmp_path / "bad.npz"
    if case == "shape":
        np.savez(path, x=x[:, :, :5], y=y)
    elif case == "labels_high":
        np.savez(path, x=x, y=np.where(np.arange(len(y)) == 3, 5, y))
    elif case == "labels_negative":
        np.savez(path, x=x, y=np.where(np.arange(len(y)) == 3, -1, y))
    elif case == "nan":
        bad = x.copy()
        bad[4, 0, 1, 1] = np.nan
        np.savez(path, x=bad, y=y)
    elif case == "missing_y":
        np.savez(path, x=x)
    elif case == "pickled":
        np.savez(path, x=x, y=np.array([{"a": 1}] * len(y), dtype=object))
    elif case == "length":
        np.savez(path, x=x, y=y[:-1])
    elif case == "float_labels":
        np.savez(path, x=x, y=y + 0.5)
    elif case == "not_npz":
        path.write_bytes(b"this is not a zip file")
    res = CliRunner().invoke(app, ["certify", onnx_path, "--data", str(path), "--format", "json"])
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_bad_usage_exit_2(setup, tmp_path):
    _, _, _, _, onnx_path, data, _ = setup
    runner = CliRunner()
    for args in (["--eps", "abc"], ["--eps", "-1"], ["--min-certified-accuracy", "2@0.1"],
                 ["--min-certified-accuracy", "0.5"], ["--json", str(tmp_path / "missing" / "r.json")],
                 ["--plot", str(tmp_path / "curve.txt")], ["--batch-size", "0"]):
        res = runner.invoke(app, ["certify", onnx_path, "--data", data, *args])
        assert res.exit_code == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
    assert not (tmp_path / "missing").exists()


def test_api_data_errors(setup):
    net, x, y, _, onnx_path, _, _ = setup
    with pytest.raises(lipaudit.DataError):
        lipaudit.certify(onnx_path, x, y[:10])
    with pytest.raises(lipaudit.DataError, match="shape"):
        lipaudit.certify(onnx_path, x.reshape(-1), y)
    with pytest.raises(lipaudit.UsageError):
        lipaudit.certify(onnx_path, x, y, eps=[float("nan")])
    with pytest.raises(lipaudit.ModelLoadError, match="no such file"):
        lipaudit.certify("missing.pt2", x, y)


class GatedNet(torch.nn.Module):
    """A squeeze-excite gate: a product of input-dependent tensors, certifiable on a domain only."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc((h * torch.sigmoid(h.mean((2, 3), keepdim=True))).flatten(1))


def test_input_range_domain(setup):
    net, x, y, _, _, _, _ = setup
    r = lipaudit.certify(net, x, y, input_range=(-1, 1), eps=[0.01])  # a global L: the range does not restrict it
    assert "valid_on" not in r.robustness.lipschitz
    torch.manual_seed(0)
    gated = GatedNet().eval()
    with pytest.raises(lipaudit.UsageError, match="certified Lipschitz bound"):
        lipaudit.certify(gated, x, y)  # no global constant for the gate
    with pytest.raises(lipaudit.DataError, match="outside the input range"):
        lipaudit.certify(gated, x, y, input_range=(-1, 1))
    inside = np.clip(x, -1, 1)
    r = lipaudit.certify(gated, inside, y, input_range=(-1, 1), eps=[0.01])
    lip = r.robustness.lipschitz
    assert lip["valid_on"] == [-1.0, 1.0] and "domain" in lip["note"]
    with torch.no_grad():
        logits = gated(torch.from_numpy(inside)).numpy().astype(np.float64)
    clean, cert, _ = expected(logits, y, lip["value"], [0.01])
    assert r.robustness.clean_accuracy == pytest.approx(clean) and r.robustness.at(0.01) == pytest.approx(cert[0.01])
    jsonschema.validate(r.to_dict(), schema())


def test_onnx_certify_never_imports_torch(setup, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    _, _, _, _, onnx_path, data, _ = setup
    code = ("import sys; from lipaudit.cli import app\n"
            f"sys.argv = ['lipaudit', 'certify', {onnx_path!r}, '--data', {data!r}, '-q']\n"
            "try:\n    app()\nexcept SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.stdout.strip() == "exit 0 False", out.stderr


def test_certify_report_repr_html(setup):
    net, x, y, _, _, _, _ = setup
    r = lipaudit.certify(net, x[:50], y[:50], eps=[0.01, 0.05])
    page = r._repr_html_()
    assert "certified robustness" in page and f"{r.robustness.at(0.01):.4f}" in page


def test_certify_pt2_runs_its_onnx_export(tmp_path):
    """A .pt2 archive is certified through the ONNX graph lipaudit exports from it (no other runtime)."""
    from tests.conftest import SAMPLES

    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = np.arange(40) % 10
    from_pt2 = lipaudit.certify(str(SAMPLES / "digits_cnn_bn.pt2"), x, y, eps=[0.001])
    from_onnx = lipaudit.certify(str(SAMPLES / "digits_cnn_bn.onnx"), x, y, eps=[0.001])
    assert from_pt2.model["format"] == "pt2" and from_pt2.model["path"].endswith("digits_cnn_bn.pt2")
    assert from_pt2.model["sha256"] == lipaudit.loaders.sha256(str(SAMPLES / "digits_cnn_bn.pt2"))
    np.testing.assert_array_equal(from_pt2.robustness.predictions, from_onnx.robustness.predictions)
    assert from_pt2.robustness.clean_accuracy == from_onnx.robustness.clean_accuracy
    assert from_pt2.robustness.lipschitz["kind"] in ("upper", "exact")
    with pytest.raises(lipaudit.UsageError, match="without a graph"):
        lipaudit.certify(str(SAMPLES / "digits_cnn_bn.pt"), x, y)
