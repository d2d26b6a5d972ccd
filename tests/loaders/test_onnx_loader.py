"""ONNX loader edge cases: external data, control flow, checker failures, symbolic shapes, auto_pad."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lipaudit.engine import audit
from lipaudit.errors import InputShapeError, ModelLoadError, UnsupportedOpError
from lipaudit.loaders.onnx import load_onnx
from tests.conftest import shared_model


def _conv_model(weight, attrs=None, batch="N", spatial=(6, 6), opset=13):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, weight.shape[1], *spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **(attrs or {}))
    graph = helper.make_graph([node], "g", [x], [y], initializer=[numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_external_data_loads_from_the_model_directory(tmp_path):
    w = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32)
    model = _conv_model(w, {"pads": [1, 1, 1, 1]})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    graph = load_onnx(str(path))
    np.testing.assert_array_equal(graph.constants["w"], w)
    assert audit(graph).network["certified"].value > 0
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match="external weights"):
        load_onnx(str(path))


def test_control_flow_is_refused_naming_the_node(tmp_path):
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    branch = lambda v: helper.make_graph(
        [helper.make_node("Constant", [], ["o"], value=numpy_helper.from_array(np.array([v], np.float32)))], "b", [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["c"], ["y"], name="the_if", then_branch=branch(1.0), else_branch=branch(2.0))
    model = helper.make_model(helper.make_graph([node], "g", [cond], [out]), opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "if.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedOpError, match="the_if"):
        load_onnx(str(path))


def test_checker_failure_is_a_load_error(tmp_path):
    w = np.ones((2, 1, 3, 3), np.float32)
    model = _conv_model(w)
    model.graph.node[0].input[1] = "missing_weight"
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="onnx.checker"):
        load_onnx(str(path))


def test_symbolic_batch_is_one_and_other_dims_need_input_shape(tmp_path):
    w = np.ones((2, 1, 3, 3), np.float32)
    path = tmp_path / "dyn.onnx"
    onnx.save(_conv_model(w, spatial=("H", "W")), str(path))
    with pytest.raises(InputShapeError, match="--input-shape"):
        load_onnx(str(path))
    graph = load_onnx(str(path), (1, 1, 9, 7))
    assert graph.shapes["x"] == (1, 1, 9, 7)
    with pytest.raises(InputShapeError):
        load_onnx(str(path), (1, 1, 9))
    fixed = tmp_path / "fixed.onnx"
    onnx.save(_conv_model(w, spatial=(5, 5)), str(fixed))
    assert load_onnx(str(fixed)).shapes["x"] == (1, 1, 5, 5)


@pytest.mark.parametrize("auto_pad,expected", [("SAME_UPPER", [0, 0, 1, 1]), ("SAME_LOWER", [1, 1, 0, 0]), ("VALID", [0, 0, 0, 0])])
def test_auto_pad(tmp_path, auto_pad, expected):
    w = np.ones((2, 1, 2, 2), np.float32)
    path = tmp_path / "ap.onnx"
    onnx.save(_conv_model(w, {"auto_pad": auto_pad}), str(path))
    layer = audit(load_onnx(str(path))).layers[0]
    assert layer.pads == expected


def test_mnist8_same_upper_and_bias_add():
    graph = load_onnx(shared_model("onnxzoo_mnist-8.onnx"))
    result = audit(graph)
    convs = [l for l in result.layers if l.op == "Conv"]
    assert [l.pads for l in convs] == [[2, 2, 2, 2], [2, 2, 2, 2]]


def test_constant_of_shape_weights_are_folded(tmp_path):
    shape = numpy_helper.from_array(np.array([2, 1, 3, 3], np.int64), "shape")
    fill = helper.make_node("ConstantOfShape", ["shape"], ["w"], value=numpy_helper.from_array(np.array([0.5], np.float32)))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    model = helper.make_model(helper.make_graph([fill, conv], "g", [x], [y], initializer=[shape]),
                              opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "cos.onnx"
    onnx.save(model, str(path))
    graph = load_onnx(str(path))
    np.testing.assert_array_equal(graph.constants["w"], np.full((2, 1, 3, 3), 0.5, np.float32))
    # rank-one constant kernel: TN is exact, 3 * ||0.5 * ones(2x9)|| / 3 ... checked against F4
    layer = audit(graph).layers[0]
    assert layer.values["tn"].value == pytest.approx(layer.values["f4"].value, rel=1e-5)
