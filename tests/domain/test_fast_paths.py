"""The float64 torch paths used for interval bounds of Conv, MaxPool and AveragePool equal onnx's reference operators.

(Any configuration they do not cover — SAME padding, ceil_mode, other ranks — runs the reference itself.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from lipaudit.graph import Graph, Node
from lipaudit.ops.box import _fast_pool, _torch_conv


class _Ctx:
    def __init__(self, shapes, constants=None):
        self.graph = Graph([], [], [], constants or {}, shapes)

    def opset(self):
        return 19

    def const(self, name):
        return self.graph.constants.get(name)


def _reference(op, attrs, feeds):
    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, v.shape) for n, v in feeds.items()]
    node = helper.make_node(op, list(feeds), ["Y"], **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_empty_tensor_value_info("Y")])
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])).run(None, feeds)[0]


POOLS = [(op, k, s, p, inc, d) for op, k, s, p, inc, d in itertools.product(
    ["MaxPool", "AveragePool"], [[2, 2], [3, 3], [3, 2]], [[1, 1], [2, 2], [2, 1]],
    [[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0], [1, 0, 2, 1]], [0, 1], [[1, 1], [2, 1]])
    if not (op == "AveragePool" and d != [1, 1]) and all(pp < kk for pp, kk in zip(p, k + k))]


def _onnxruntime(op, attrs, x):
    """onnxruntime (float32): onnx's reference MaxPool/AveragePool mishandle asymmetric pads (shape (6, 7) for
    a 7x6 input, 3x3 kernel, pads [1, 0, 2, 1], where shape inference and onnxruntime give (8, 5))."""
    import onnxruntime as ort

    node = helper.make_node(op, ["X"], ["Y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                              [helper.make_empty_tensor_value_info("Y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return ort.InferenceSession(model.SerializeToString()).run(None, {"X": x.astype(np.float32)})[0]


@pytest.mark.parametrize("op,k,s,pads,include,dil", POOLS)
def test_pools(op, k, s, pads, include, dil):
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 6))
    attrs = dict(kernel_shape=k, strides=s, pads=pads, dilations=dil)
    if op == "AveragePool":
        attrs["count_include_pad"] = include
    y = _onnxruntime(op, attrs, x)
    fast = _fast_pool(Node("n", op, ["X"], ["Y"], attrs), _Ctx({"Y": y.shape}), {"X": x}, None)
    assert fast is not None and np.allclose(fast[0], y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank,groups,k,s,pads,dil", [
    (2, 1, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), (2, 2, [3, 2], [2, 1], [0, 1, 2, 0], [1, 2]),
    (2, 4, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1]), (1, 1, [3], [2], [1, 2], [2]), (3, 2, [2, 2, 2], [1, 2, 1], [1, 0, 0, 0, 1, 1], [1, 1, 1]),
])
def test_conv(rank, groups, k, s, pads, dil):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4) + (7,) * rank)
    w = rng.standard_normal((4, 4 // groups) + tuple(k))
    attrs = dict(kernel_shape=k, strides=s, pads=pads, dilations=dil, group=groups)
    y = _reference("Conv", attrs, {"X": x, "W": w})
    ctx = _Ctx({"X": x.shape, "Y": y.shape}, {"W": w})
    run = _torch_conv(Node("n", "Conv", ["X", "W"], ["Y"], attrs), ctx)
    assert run is not None and np.allclose(run({"X": x, "W": w}), y, rtol=1e-12, atol=1e-12)
