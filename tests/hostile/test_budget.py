"""Class 5: resources are bounded before they are spent (estimates from shapes, --max-memory)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lipaudit.budget import DEFAULT_MAX_MEMORY, parse_size
from lipaudit.errors import UsageError
from tests.conftest import SAMPLES
from tests.hostile.harness import invoke

W = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")


def _save(tmp_path, name, nodes, in_shape, inits):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ("a", "b", "c", "d"))], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / name))
    return name


HOSTILE = {
    # a 300-byte Resize asking for a 1e7 upscale
    "resize": lambda t: _save(t, "resize.onnx", [helper.make_node("Resize", ["x", "", "sc"], ["y"], name="up")],
                              [1, 1, 28, 28], [numpy_helper.from_array(np.array([1, 1, 1e7, 1], np.float32), "sc")]),
    "constant_of_shape": lambda t: _save(t, "cos.onnx", [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
        helper.make_node("Add", ["x", "big"], ["y"], name="add")],
        [1, 1, 8, 8], [numpy_helper.from_array(np.array([1, 1, 10**6, 10**6], np.int64), "shape")]),
    "huge_pads": lambda t: _save(t, "pads.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv",
                                                                   pads=[10**6] * 4)], [1, 1, 8, 8], [W]),
    "huge_dilation": lambda t: _save(t, "dil.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv",
                                                                      dilations=[10**5] * 2, pads=[10**5] * 4)],
                                     [1, 1, 8, 8], [W]),
    "huge_input": lambda t: _save(t, "big.onnx", [helper.make_node("AveragePool", ["x"], ["y"], name="pool",
                                                                   kernel_shape=[3, 3])], [1, 1, 60000, 60000], []),
}
METHOD = {"resize": "tn", "constant_of_shape": "tn", "huge_pads": "certified", "huge_dilation": "certified",
          "huge_input": "tn"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_refused_before_allocating(tmp_path, monkeypatch, case):
    model = HOSTILE[case](tmp_path)
    res = invoke(tmp_path, monkeypatch, "check", model, "--method", METHOD[case], timeout=30)
    line = res.stderr.strip()
    assert "--max-memory" in line and "above the memory budget of 4.0 GB" in line, line
    assert any(name in line for name in ("'up'", "'fill'", "'conv'", "'pool'")), line


def test_cheap_methods_are_not_refused_for_a_large_input(tmp_path, monkeypatch):
    """TN does not depend on the input size: a 60000x60000 input is fine for it, not for fft."""
    name = _save(tmp_path, "wide.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                 [1, 1, 60000, 60000], [W])
    invoke(tmp_path, monkeypatch, "check", name, "-q", code=0, lines=1)
    res = invoke(tmp_path, monkeypatch, "check", name, "--compare", "fft")
    assert "Conv (fft)" in res.stderr


def test_the_flag_moves_the_budget(tmp_path, monkeypatch):
    sample = str(SAMPLES / "mnist_resnet.onnx")
    res = invoke(tmp_path, monkeypatch, "check", sample, "--method", "certified", "--max-memory", "1MB")
    assert "above the memory budget of 1.0 MB" in res.stderr
    res = invoke(tmp_path, monkeypatch, "check", str(SAMPLES / "digits_cnn_bn.pt2"), "--max-memory", "50KB")
    assert "unpacking the archive" in res.stderr


@pytest.mark.parametrize("text,value", [("4GB", 4 * 10**9), ("500MB", 5 * 10**8), ("2GiB", 2 * 2**30), ("1e9", 10**9),
                                        ("8 gb", 8 * 10**9)])
def test_parse_size(text, value):
    assert parse_size(text) == value
    assert DEFAULT_MAX_MEMORY == 4 * 10**9


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "nanGB", "infGB", "0", "4XB", "1e400"])
def test_bad_sizes_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_size(text)
