"""PyTorch inputs: round trips against ONNX, real checkpoints, safety, bad input."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from lipaudit.runner import CheckOptions, run_check
from tests.conftest import ROOT, SAMPLES, shared_model

SHAPES = {"digits_cnn_bn": (1, 1, 8, 8), "mnist_resnet": (1, 1, 28, 28), "mnist_spectral_norm": (1, 1, 28, 28)}


def check(path, **kw):
    return run_check(str(path), CheckOptions(timed=False, **kw))


def lipaudit(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "lipaudit", *args], capture_output=True, text=True, cwd=cwd)


def _close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(abs(a), abs(b))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_pt2_torchscript_onnx_give_the_same_numbers(name):
    reports = {
        "onnx": check(SAMPLES / f"{name}.onnx"),
        "pt2": check(SAMPLES / f"{name}.pt2"),
        "torchscript": check(SAMPLES / f"{name}.torchscript.pt", input_shape=SHAPES[name], trust_pickle=True),
    }
    for fmt, r in reports.items():
        assert r["verdict"] == "pass", (fmt, r["findings"])
    ref = reports["onnx"]
    for fmt in ("pt2", "torchscript"):
        other = reports[fmt]
        assert len(other["layers"]) == len(ref["layers"]), fmt
        for la, lb in zip(ref["layers"], other["layers"]):
            for method in ("tn", "certified"):
                assert _close(la["values"][method]["value"], lb["values"][method]["value"]), (fmt, la["name"], method)
        for comp in ("tn", "certified"):
            assert _close(ref["network"][comp]["value"], other["network"][comp]["value"]), (fmt, comp)


def test_state_dict_per_layer_values_match_onnx():
    onnx_report = check(SAMPLES / "digits_cnn_bn.onnx")
    sd = check(SAMPLES / "digits_cnn_bn.pt", strides={"features.3": (2, 2)})
    assert sd["verdict"] == "pass" and sd["network"] == {}
    assert {f["code"] for f in sd["findings"]} >= {"LIP008"}
    assert [l["folded"] for l in sd["layers"]][:3] == [["features.1"], ["features.4"], ["features.7"]]
    for la, lb in zip(onnx_report["layers"], sd["layers"]):
        for method in ("tn", "f4", "certified"):
            assert _close(la["values"][method]["value"], lb["values"][method]["value"]), (la["name"], method)


def test_state_dict_assumes_stride_one_and_says_so():
    sd = check(SAMPLES / "digits_cnn_bn.pt")
    assert any(f["code"] == "LIP009" for f in sd["findings"])
    assert any("stride 1 assumed" in (l.get("note") or "") for l in sd["layers"])


def test_state_dict_gate_needing_a_network_is_exit_2():
    r = check(SAMPLES / "digits_cnn_bn.pt", max_lipschitz=10.0)
    assert r["verdict"] == "error" and any(f["code"] == "LIP106" for f in r["findings"])
    assert lipaudit("check", str(SAMPLES / "digits_cnn_bn.pt"), "--max-lipschitz", "10", "-q").returncode == 2
    assert lipaudit("check", str(SAMPLES / "digits_cnn_bn.pt"), "--max-layer-norm", "1e9", "-q").returncode == 0


def test_real_checkpoint_with_state_dict_key():
    r = check(shared_model("resnet_2b.pth"))
    assert r["verdict"] == "pass"
    assert [l["op"] for l in r["layers"]].count("Conv2d") == 6
    onnx_r = check(shared_model("resnet_2b.onnx"))
    # stride-1 layers do not depend on the unknown stride: same values as the graph audit
    for la, lb in zip(onnx_r["layers"], r["layers"]):
        if la["strides"] == [1, 1]:
            assert _close(la["values"]["tn"]["value"], lb["values"]["tn"]["value"]), la["name"]


def test_real_checkpoint_with_a_list_of_state_dicts():
    r = check(shared_model("cifar_base_kw.pth"))
    assert r["verdict"] == "pass"
    assert [l["op"] for l in r["layers"]] == ["Conv2d", "Conv2d", "Linear", "Linear"]


def test_real_state_dict_pairs_batchnorm_and_infers_depthwise():
    r = check(shared_model("version-slim-320.pth"))
    assert r["verdict"] == "pass"
    convs = [l for l in r["layers"] if l["op"] == "Conv2d"]
    assert len(convs) == 42
    assert sum(1 for l in convs if l["folded"]) == 25
    assert sum(1 for l in convs if l["groups"] and l["groups"] > 1) == 19
    assert convs[0]["folded"] == ["base_net.0.1"]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    for kind in ("raw", "zip"):
        target = tmp_path / f"pwned_{kind}"
        path = tmp_path / f"evil_{kind}.pt"
        if kind == "raw":
            path.write_bytes(pickle.dumps({"w": _Evil(str(target))}))
        else:
            torch.save({"w": _Evil(str(target))}, path)
        res = lipaudit("check", str(path))
        assert res.returncode == 2, res.stderr
        assert "refusing to unpickle" in res.stderr or "not a readable" in res.stderr
        assert "Traceback" not in res.stderr
        assert not target.exists(), "unpickling ran code from the file"


def test_pickled_module_needs_trust(tmp_path):
    from scripts.make_sample_models import DigitsCNN

    path = tmp_path / "whole.pt"
    torch.save(DigitsCNN().eval(), path)
    refused = lipaudit("check", str(path))
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    trusted = lipaudit("check", str(path), "--trust-pickle", "--input-shape", "1,1,8,8", "-q")
    assert trusted.returncode == 0 and "certified=" in trusted.stderr


def test_arch_builds_the_graph_for_a_state_dict():
    res = lipaudit("check", str(SAMPLES / "digits_cnn_bn.pt"), "--arch", "scripts.make_sample_models:DigitsCNN",
                   "--input-shape", "1,1,8,8", "--format", "json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    ref = check(SAMPLES / "digits_cnn_bn.onnx")
    assert _close(report["network"]["certified"]["value"], ref["network"]["certified"]["value"])


def test_safetensors_like_a_state_dict(tmp_path):
    from safetensors.torch import save_file

    sd = torch.load(SAMPLES / "digits_cnn_bn.pt", weights_only=True)
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    a, b = check(path), check(SAMPLES / "digits_cnn_bn.pt")
    assert a["verdict"] == "pass"
    # safetensors keeps no module order: keys are read in natural order, pairing stays right
    values = lambda r: {l["name"]: (l["values"]["tn"]["value"], tuple(l["folded"])) for l in r["layers"]}
    assert values(a) == values(b)


def test_bad_torch_inputs_are_exit_2(tmp_path):
    good = (SAMPLES / "digits_cnn_bn.pt").read_bytes()
    cases = {
        "truncated.pt": good[: len(good) // 2],
        "garbage.pt": os.urandom(2048),
        "onnx_named.pt": (SAMPLES / "digits_cnn_bn.onnx").read_bytes(),
        "truncated.pt2": (SAMPLES / "digits_cnn_bn.pt2").read_bytes()[:5000],
        "bad.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json",
    }
    nan = {k: v.clone() for k, v in torch.load(SAMPLES / "digits_cnn_bn.pt", weights_only=True).items()}
    nan["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, tmp_path / "nan.pt")
    torch.save({}, tmp_path / "empty.pt")
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "notensors.pt")
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in list(cases) + ["nan.pt", "empty.pt", "notensors.pt"]:
        res = lipaudit("check", str(tmp_path / name))
        assert res.returncode == 2, (name, res.stderr)
        lines = [l for l in res.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.stderr, (name, res.stderr)
    assert "NaN" in lipaudit("check", str(tmp_path / "nan.pt")).stderr


def test_torchscript_without_input_shape_is_a_clear_error():
    res = lipaudit("check", str(SAMPLES / "digits_cnn_bn.torchscript.pt"), "--trust-pickle")
    assert res.returncode == 2 and "--input-shape" in res.stderr
