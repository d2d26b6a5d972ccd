"""--compare, the unsound-TN finding, plot and HTML output."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lipaudit.bounds import BoundSettings, HopmSettings
from lipaudit.engine import AuditSettings, audit
from lipaudit.loaders.onnx import load_onnx
from lipaudit.policy import Gates, evaluate
from tests.bruteforce import dense_norm
from tests.conftest import SAMPLES, export_onnx

runner = CliRunner()


def test_compare_exact_matches_brute_force(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular"))
    path = export_onnx(model, torch.zeros(1, 3, 8, 8), tmp_path / "m.onnx")
    res = runner.invoke(app_(), ["check", path, "--compare", "exact,f4,fro,fft", "--format", "json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    first, second = report["layers"]
    conv1 = model[0].double()
    truth1 = dense_norm(lambda x: nn.functional.conv2d(x, conv1.weight, stride=2, padding=1), (1, 3, 8, 8))
    assert first["values"]["exact"]["detail"]["lower_estimate"] == pytest.approx(truth1, rel=1e-4)
    assert first["values"]["fft"]["value"] >= truth1 * (1 - 1e-6)
    assert set(first["ratios"]) >= {"tn/exact", "f4/exact", "fro/exact", "fft/exact"}
    for method in ("exact", "f4", "fro", "fft", "tn"):
        assert first["values"][method]["time_s"] >= 0
    # torch exports circular padding as Slice + Concat of the input, and a valid conv
    assert second["values"]["exact"]["value"] > 0
    assert report["network"]["exact"]["value"] > 0 and "ratio_to_exact" in report["network"]["tn"]


def test_exact_closes_its_bracket_for_circular_padding():
    from lipaudit.bounds import ConvSpec, conv_bounds

    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    spec = ConvSpec(w, (2, 2), None, 1, (1, 1, 1, 1), "circular", input_size=(8, 8))
    exact = conv_bounds(spec, ("exact",))["exact"]
    truth = dense_norm(
        lambda x: nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), torch.as_tensor(w), stride=2),
        (1, 2, 8, 8),
    )
    assert exact.kind.value == "exact" and exact.value == pytest.approx(truth, rel=1e-4) and exact.value >= truth


def app_():
    from lipaudit.cli import app

    return app


def test_tn_below_exact_is_an_error_finding():
    torch.manual_seed(3)
    graph = load_onnx(str(SAMPLES / "mnist_resnet.onnx"))
    crippled = BoundSettings(hopm=HopmSettings(max_iters=1, restarts=1, fourier_starts=0, schedule=()))
    result = audit(graph, AuditSettings(compare=("exact",), bounds=crippled))
    findings = evaluate(result, Gates())
    unsound = [f for f in findings if f.code == "LIP005"]
    assert unsound, "one HOPM sweep from a random start must fall below some layer's exact norm"
    assert all(f.severity == "error" and f.node for f in unsound)
    # the certified values never used the unverified TN
    for layer in result.layers:
        assert layer.values["certified"].value >= layer.values["exact"].detail.get("lower_estimate", 0) * (1 - 1e-6)


def test_plot_writes_a_png(tmp_path):
    report = tmp_path / "r.json"
    assert runner.invoke(app_(), ["check", str(SAMPLES / "mnist_resnet.onnx"), "--compare", "exact", "--json", str(report), "-q"]).exit_code == 0
    png = tmp_path / "r.png"
    res = runner.invoke(app_(), ["plot", str(report), "-o", str(png)])
    assert res.exit_code == 0, res.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as img:
        assert img.size[0] > 400 and img.size[1] > 300
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert runner.invoke(app_(), ["plot", str(bad), "-o", str(png)]).exit_code == 2


def test_html_is_self_contained(tmp_path):
    out = tmp_path / "r.html"
    res = runner.invoke(app_(), ["check", str(SAMPLES / "digits_cnn_bn.onnx"), "--compare", "exact", "--html", str(out), "-q"])
    assert res.exit_code == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    # nothing is fetched: no external src/href at all
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page)
    assert "<script" not in page
    assert "/features/features.0/Conv" in page
