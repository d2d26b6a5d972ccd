"""Spelled-out element-wise functions (gates, Softsign, Softplus): constants and certificates vs brute force.

The gate ranges are checked against densely sampled slopes (torch autograd,
float64); each recognised graph is evaluated by onnx's reference evaluator on a
dense grid, and every secant slope must lie below the certificate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops._op import OpRunUnaryNum

from lipaudit.ops import patterns
from tests.soundness.graphs import Net, certify

GRID = torch.linspace(-40, 40, 800001, dtype=torch.float64)


def _slope_range(fn, grid=GRID) -> tuple[float, float]:
    x = grid.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return float(g.min()), float(g.max())


def _softplus(t):
    return torch.nn.functional.softplus(t)


K1 = math.sqrt(2 / math.pi)


@pytest.mark.parametrize("name,fn", [
    ("SIGMOID_GATE", lambda x: x * torch.sigmoid(x)),
    ("TANH_GATE", lambda x: x * torch.tanh(x)),
    ("ERF_GATE", lambda x: x * torch.erf(x)),
    ("MISH_GATE", lambda x: x * torch.tanh(_softplus(x))),
    ("TANH_GELU_GATE", lambda x: x * torch.tanh(K1 * (x + 0.044715 * x ** 3))),
])
def test_gate_ranges_are_outward_and_tight(name, fn):
    lo, hi = getattr(patterns, name)
    smin, smax = _slope_range(fn)
    assert lo <= smin and smax <= hi
    assert smin <= lo + 1e-4 and smax >= hi - 1e-4


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.floats(0.05, 20), st.floats(1e-4, 50), st.sampled_from([1, -1]))
def test_cubic_tanh_gate_holds_for_any_same_sign_coefficients(k1, k3, sign):
    lo, hi = patterns.TANH_CUBIC_GATE
    grid = torch.linspace(-20, 20, 200001, dtype=torch.float64)
    smin, smax = _slope_range(lambda x: x * torch.tanh(sign * (k1 * x + k3 * x ** 3)), grid)
    assert lo <= smin and smax <= hi


# -- graphs -------------------------------------------------------------------------

N = 4001  # grid points for the secants
SMALL = 8  # entries of the certified copy (the constant of an element-wise map does not depend on the size)


class Erf64(OpRunUnaryNum):
    """onnx's reference Erf rounds to float32; the secants need float64."""

    op_domain = ""

    def _run(self, x):
        return (np.vectorize(math.erf, otypes=[np.float64])(x),)


Erf64.__name__ = "Erf"


def _grid_max_secant(model) -> float:
    x = np.linspace(-12, 12, N).reshape(1, N)
    y = ReferenceEvaluator(model, new_ops=[Erf64]).run(None, {"x": x})[0].reshape(-1)
    return float(np.max(np.abs(np.diff(y) / np.diff(x.ravel()))))


def _c(net, v):
    return net.const(np.array(float(v)))


def _gate_value(net, x, gate, k):
    """g(k x) spelled out, with k applied by Mul or Div."""
    kx = net.op("Mul", [x, _c(net, k)]) if k != 2.0 else net.op("Div", [x, _c(net, 0.5)])
    if gate == "sigmoid":
        return net.op("Sigmoid", [kx])
    if gate == "tanh":
        return net.op("Tanh", [kx])
    if gate == "erf":
        return net.op("Erf", [kx])
    if gate == "mish":
        return net.op("Tanh", [net.op("Softplus", [kx])])
    if gate == "mish_log":
        return net.op("Tanh", [net.op("Log", [net.op("Add", [_c(net, 1.0), net.op("Exp", [kx])])])])
    if gate == "tanh_gelu":
        cube = net.op("Mul", [x, net.op("Mul", [x, x])])
        inner = net.op("Add", [x, net.op("Mul", [_c(net, 0.044715), cube])])
        return net.op("Tanh", [net.op("Mul", [_c(net, K1 * k), inner])])
    if gate == "tanh_cubic":
        return net.op("Tanh", [net.op("Add", [kx, net.op("Mul", [net.op("Pow", [x, _c(net, 3)]), _c(net, 0.3)])])])
    raise ValueError(gate)


def _gate_model(gate, k, c, s, association, n=N):
    net = Net(opset=17)
    x = net.input((1, n), name="x")
    g = _gate_value(net, x, gate, k)
    if c:
        g = net.op("Add", [g, _c(net, c)]) if association % 2 else net.op("Sub", [_c(net, c), g])
    if association == 0:
        out = net.op("Mul", [net.op("Mul", [x, _c(net, s)]), g])  # (s x) g
    elif association == 1:
        out = net.op("Mul", [_c(net, s), net.op("Mul", [g, x])])  # s (g x)
    elif association == 2:
        out = net.op("Mul", [x, net.op("Mul", [g, _c(net, s)])])  # x (g s)
    else:
        out = net.op("Div", [net.op("Mul", [net.op("Neg", [x]), g]), _c(net, 1 / s)])  # (-x g) / (1/s)
    return net.build([out]), out


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.sampled_from(["sigmoid", "tanh", "erf", "mish", "mish_log", "tanh_gelu", "tanh_cubic"]),
       st.sampled_from([1.0, -1.702, 2.0, 0.3]), st.sampled_from([0.0, 1.0, -0.5]),
       st.sampled_from([0.5, 1.0, -2.0]), st.integers(0, 3))
def test_gates_in_any_association_are_certified_above_every_secant(gate, k, c, s, association):
    small, small_out = _gate_model(gate, k, c, s, association, n=SMALL)
    value, result = certify(small, outputs=[small_out])
    assert value is not None, [r.message() for r in result.refusals]
    assert value >= _grid_max_secant(_gate_model(gate, k, c, s, association)[0]) * (1 - 1e-9)


def _erf_gelu(n):
    net = Net(opset=13)
    x = net.input((1, n), name="x")
    erf = net.op("Erf", [net.op("Div", [x, _c(net, math.sqrt(2))])])
    out = net.op("Mul", [net.op("Mul", [x, net.op("Add", [erf, _c(net, 1.0)])]), _c(net, 0.5)])
    return net.build([out]), out


def test_erf_gelu_as_exported_is_tight():
    value, _ = certify(*_erf_gelu(SMALL)[:1], outputs=[_erf_gelu(SMALL)[1]])
    assert _grid_max_secant(_erf_gelu(N)[0]) <= value <= 1.1291


def _refused(build):
    net = Net(opset=17)
    x = net.input((1, 8), name="x")
    out = build(net, x)
    value, result = certify(net.build([out]), outputs=[out])
    return value is None and bool(result.refusals)


@pytest.mark.parametrize("build", [
    lambda net, x: net.op("Mul", [net.op("Mul", [x, x]), net.op("Sigmoid", [x])]),  # x^2 sigmoid(x)
    lambda net, x: net.op("Mul", [x, net.op("Sigmoid", [net.op("Add", [x, _c(net, 1.0)])])]),  # shifted argument
    lambda net, x: net.op("Mul", [x, net.op("Tanh", [net.op("Mul", [x, x])])]),  # x tanh(x^2)
    lambda net, x: net.op("Mul", [x, net.op("Tanh", [net.op("Sub", [x, net.op("Pow", [x, _c(net, 3)])])])]),
    lambda net, x: net.op("Mul", [x, net.op("Sigmoid", [net.op("Relu", [x])])]),  # another function inside
    lambda net, x: net.op("Log", [x]),
    lambda net, x: net.op("Log", [net.op("Add", [net.op("Exp", [x]), _c(net, -1.0)])]),  # log(exp(x) - 1)
    lambda net, x: net.op("Div", [x, net.op("Add", [net.op("Abs", [x]), _c(net, 0.0)])]),  # x / |x|
    lambda net, x: net.op("Div", [x, net.op("Add", [net.op("Abs", [net.op("Relu", [x])]), _c(net, 1.0)])]),
], ids=["x2-sigmoid", "shifted", "tanh-x2", "mixed-cubic", "relu-inside", "log", "log-exp-minus-1", "sign",
        "softsign-other"])
def test_lookalikes_are_refused_without_a_domain(build):
    assert _refused(build)


@pytest.mark.parametrize("a,b,c", [(1.0, 1.0, 1.0), (2.0, -0.5, 0.25), (-1.0, 3.0, 2.0)])
def test_softsign_family_is_certified_above_every_secant(a, b, c):
    def build(n):
        net = Net(opset=17)
        x = net.input((1, n), name="x")
        den = net.op("Add", [_c(net, c), net.op("Abs", [net.op("Mul", [x, _c(net, b)])])])
        out = net.op("Div", [net.op("Mul", [_c(net, a), x]), den])
        return net.build([out]), out

    model, out = build(SMALL)
    value, _ = certify(model, outputs=[out])
    assert value == pytest.approx(abs(a) / c, rel=1e-5)
    assert value >= _grid_max_secant(build(N)[0])


@pytest.mark.parametrize("c", [1.0, 0.1, 5.0])
def test_softplus_spelled_out_is_1_lipschitz(c):
    def build(n):
        net = Net(opset=17)
        x = net.input((1, n), name="x")
        out = net.op("Log", [net.op("Add", [net.op("Exp", [net.op("Mul", [x, _c(net, 3.0)])]), _c(net, c)])])
        return net.build([out]), out

    model, out = build(SMALL)
    value, _ = certify(model, outputs=[out])
    assert value == pytest.approx(3.0, rel=1e-5)
    assert value >= _grid_max_secant(build(N)[0])
