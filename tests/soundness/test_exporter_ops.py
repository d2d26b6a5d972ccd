"""Ops that real exporters emit: selections, norm pooling, log-sum-exp, MaxPool indices, Gemm/MatMul shapes.

Every certificate is checked against the brute-force witness (reference secants
along the top singular direction of a finite-difference Jacobian); for linear
maps the witness is the exact norm, so the certificate must also be tight.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.soundness.graphs import Net, assert_sound, certify, witness

rng = np.random.default_rng(0)


def _linear_tight(model, outs):
    value = assert_sound(model, outs, points=1)
    assert value is not None
    assert value <= witness(model, outs, points=1) * (1 + 1e-4)
    return value


@pytest.mark.parametrize("indices,batch_dims,shape", [
    (np.array([[0, 1], [1, 2], [0, 1], [0, 1]]), 0, (2, 3, 2)),  # one entry read three times
    (np.array([[1], [1], [0]]), 0, (2, 3)),  # a whole row read twice
    (np.array([[[1], [1]], [[0], [2]]]), 1, (2, 3)),  # batch_dims=1
])
def test_gather_nd_with_constant_indices(indices, batch_dims, shape):
    net = Net(opset=13)
    x = net.input(shape, name="x")
    y = net.op("GatherND", [x, net.const(indices.astype(np.int64))], batch_dims=batch_dims)
    _linear_tight(net.build([y]), [y])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_with_constant_indices(axis):
    net = Net(opset=13)
    x = net.input((1, 3, 4), name="x")
    idx = rng.integers(-3 if axis == 1 else -4 if axis == -1 else 0, 3 if axis == 1 else 4 if axis == -1 else 1,
                       size=(1, 3, 4) if axis != 0 else (2, 3, 4))
    y = net.op("GatherElements", [x, net.const(idx.astype(np.int64))], axis=axis)
    _linear_tight(net.build([y]), [y])


def test_gather_out_of_range_is_refused():
    net = Net(opset=13)
    x = net.input((1, 3), name="x")
    y = net.op("GatherElements", [x, net.const(np.array([[0, 5]], dtype=np.int64))], axis=1)
    value, result = certify(net.build([y]), outputs=[y])
    assert value is None and result.refusals


@pytest.mark.parametrize("p,kernel,strides", [(1, [3, 3], [1, 1]), (2, [2, 2], [1, 1]), (3, [3, 2], [2, 1]),
                                              (1, [2, 2], [2, 2])])
def test_lp_pool_is_sound(p, kernel, strides):
    net = Net(opset=18)
    x = net.input((1, 2, 5, 5), name="x")
    y = net.op("LpPool", [x], kernel_shape=kernel, strides=strides, p=p, pads=[1, 0, 1, 0])
    assert assert_sound(net.build([y]), [y], points=2) is not None


@pytest.mark.parametrize("p", [1, 2, 4])
def test_global_lp_pool_against_dense_jacobians(p):
    # onnx's reference evaluator has no GlobalLpPool: its Jacobian is computed here (per channel, grad ||v||_p)
    net = Net(opset=17)
    x = net.input((1, 2, 3, 3), name="x")
    y = net.op("GlobalLpPool", [x], p=p)
    value, _ = certify(net.build([y]), outputs=[y])

    def grad(v):
        a = np.abs(v) + 1e-300
        return np.sign(v) * a ** (p - 1) / np.sum(a ** p) ** (1 - 1 / p)

    worst = max(np.linalg.norm(grad(v)) for v in [rng.standard_normal(9) for _ in range(200)] + [np.eye(9)[0], np.ones(9)])
    assert worst <= value * (1 + 1e-9)
    assert value <= worst * (1 + 1e-5)  # attained: one-hot for p >= 2, all signs equal for p = 1


def test_reduce_log_sum_exp_is_1_lipschitz():
    net = Net(opset=18)
    x = net.input((1, 3, 4), name="x")
    y = net.op("ReduceLogSumExp", [x, net.const(np.array([1], dtype=np.int64))], keepdims=0)
    assert assert_sound(net.build([y]), [y], points=2) == pytest.approx(1.0)


def test_maxpool_with_an_unused_indices_output_is_certified_and_a_used_one_refused():
    net = Net(opset=17)
    x = net.input((1, 2, 6, 6), name="x")
    y, idx = net.op("MaxPool", [x], n_out=2, kernel_shape=[2, 2], strides=[2, 2])
    assert assert_sound(net.build([y]), [y], points=1) is not None
    net = Net(opset=17)
    x = net.input((1, 2, 6, 6), name="x")
    y, idx = net.op("MaxPool", [x], n_out=2, kernel_shape=[2, 2], strides=[2, 2])
    z = net.op("Add", [y, net.op("Cast", [idx], to=11)])
    value, result = certify(net.build([z]), outputs=[z])
    assert value is None and result.refusals[0].slot == "Indices"


@pytest.mark.parametrize("shape,trans_b", [((8, 1), 0), ((8, 3), 1)])
def test_gemm_with_transA_on_the_data(shape, trans_b):
    net = Net(opset=17)
    x = net.input(shape, name="x")
    w = rng.standard_normal((8, 4)) if not trans_b else rng.standard_normal((4, 8))
    y = net.op("Gemm", [x, net.const(w)], transA=1, transB=trans_b, alpha=0.5)
    value = _linear_tight(net.build([y]), [y])
    assert value == pytest.approx(0.5 * np.linalg.norm(w, 2), rel=1e-5)


@pytest.mark.parametrize("x_shape,c_shape,left", [
    ((1, 3, 8), (8,), False),  # x @ v
    ((1, 8, 3), (8,), True),  # v @ x
    ((8,), (8, 5), False),  # 1-D data
    ((1, 3, 8), (3, 8, 5), False),  # batched constant, one per data slice
    ((2, 1, 4, 8), (3, 8, 5), False),  # data slices broadcast against 3 weight slices
    ((1, 4, 8), (3, 8, 5), False),  # one data slice meets 3 weight slices: stacked
    ((3, 8, 2), (3, 5, 8), True),  # batched constant on the left
    ((1, 8, 2), (3, 5, 8), True),
])
def test_matmul_with_1d_and_batched_constants(x_shape, c_shape, left):
    net = Net(opset=17)
    x = net.input(x_shape, name="x")
    c = net.const(rng.standard_normal(c_shape))
    y = net.op("MatMul", [c, x] if left else [x, c])
    _linear_tight(net.build([y]), [y])
