"""Boxes through chains of pointwise linear ops (lipaudit/ops/linear_forms.py).

For a chain that is linear in the input, the exact range of every output entry on a
box is ``mid +- |M| rad`` with ``M`` the composed matrix, attained at a corner: the
boxes must contain those corners' values (soundness) and be no wider than the exact
range (the forms keep the correlations that plain interval arithmetic loses).
Random chains mixing pointwise ops with non-linear ones (hypothesis) must contain
the values at sampled points, corners included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from lipaudit.ops.box import Box
from tests.soundness.graphs import Net, certify

H = 4


def _conv1x1(net, x, w, b=None, **attrs):
    inputs = [x, net.const(w.reshape(w.shape + (1, 1)))] + ([net.const(b)] if b is not None else [])
    return net.op("Conv", inputs, **attrs)


def _bn_params(rng, c):
    return rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.random(c) + 0.1


def _bn(net, x, rng, c, params=None):
    params = params if params is not None else _bn_params(rng, c)
    return net.op("BatchNormalization", [x] + [net.const(p) for p in params])


def _boxes(model, lo, hi):
    _, result = certify(model, input_range=(lo, hi))
    return result.boxes


def _run(model, names, x):
    from onnx.reference import ReferenceEvaluator

    return dict(zip(names, ReferenceEvaluator(model).run(names, {"x": x})))


def test_bottleneck_chain_is_exact_on_the_box():
    """1x1 conv -> BN -> 1x1 conv (-> added to the input): the box is the exact range, attained at corners,
    and much narrower than |W2| |W1| r."""
    rng = np.random.default_rng(0)
    c, mid = 8, 16
    net = Net(opset=17)
    x = net.input((1, c, H, H), name="x")
    w1, w2 = rng.standard_normal((mid, c)), rng.standard_normal((c, mid))
    b1 = rng.standard_normal(mid)
    y = _conv1x1(net, x, w1, b1)
    gamma, beta, mean, var = params = _bn_params(rng, mid)
    z = _bn(net, y, rng, mid, params)
    out = net.op("Add", [x, _conv1x1(net, z, w2)])
    model = net.build([out])
    lo, hi = -1.0, 2.0
    box = _boxes(model, lo, hi)[out]
    # the composed map: out = (I + W2 diag(s) W1) x + const, per position
    s = gamma / np.sqrt(var + 1e-5)
    m = np.eye(c) + w2 @ (s[:, None] * w1)
    exact_rad = np.abs(m).sum(axis=1) * (hi - lo) / 2
    loose_rad = (np.abs(w2) @ (np.abs(s)[:, None] * np.abs(w1)) + np.eye(c)).sum(axis=1) * (hi - lo) / 2
    width = (box.hi - box.lo)[0, :, 0, 0] / 2
    assert np.all(width <= exact_rad * (1 + 1e-7) + 1e-9)
    assert np.all(width < 0.8 * loose_rad)  # the point of the forms: correlations kept
    for ch in range(c):  # the extreme corners are inside (and touch) the box
        for sgn in (1, -1):
            corner = np.where(sgn * m[ch] > 0, hi, lo)[None, :, None, None] * np.ones((1, c, H, H))
            v = _run(model, [out], corner)[out][0, ch]
            assert np.all(v <= box.hi[0, ch] + 1e-9) and np.all(v >= box.lo[0, ch] - 1e-9)
            edge = box.hi[0, ch] if sgn > 0 else box.lo[0, ch]
            assert np.allclose(v, edge, rtol=1e-6, atol=1e-6)


def test_not_pointwise_convs_keep_interval_boxes():
    """A 1x1 conv with a stride, padding or groups is not pointwise: the plain interval box stands (and holds)."""
    rng = np.random.default_rng(1)
    for attrs in ({"strides": [2, 2]}, {"pads": [1, 1, 1, 1]}, {"group": 2}):
        net = Net(opset=17)
        x = net.input((1, 4, H, H), name="x")
        cin = 4 // attrs.get("group", 1)
        y = net.op("Conv", [x, net.const(rng.standard_normal((4, cin, 1, 1)))], **attrs)
        out = net.op("Conv", [net.op("Relu", [y]), net.const(rng.standard_normal((3, 4, 1, 1)))])
        model = net.build([out])
        boxes = _boxes(model, -1.0, 1.0)
        for point in (np.full((1, 4, H, H), -1.0), np.ones((1, 4, H, H)), rng.uniform(-1, 1, (1, 4, H, H))):
            got = _run(model, [y, out], point)
            for name in (y, out):
                assert np.all(got[name] >= boxes[name].lo) and np.all(got[name] <= boxes[name].hi)


# -- a family of pointwise chains with non-linear bases in between ------------------------------------------

C = 3


def _pw_conv(net, x, rng):
    return _conv1x1(net, x, rng.standard_normal((C, C)), rng.standard_normal(C) if rng.random() < 0.5 else None)


def _pw_bottleneck(net, x, rng):
    y = _bn(net, _conv1x1(net, x, rng.standard_normal((2, C))), rng, 2)
    return _conv1x1(net, y, rng.standard_normal((C, 2)))


def _linear_residual(net, x, rng):
    return net.op("Add", [_bn(net, _pw_conv(net, net.op("Relu", [x]), rng), rng, C), x])


def _sub_branches(net, x, rng):
    return net.op("Sub", [_pw_conv(net, x, rng), _pw_conv(net, x, rng)])


def _self_sub(net, x, rng):
    return net.op("Add", [net.op("Sub", [x, x]), _pw_conv(net, x, rng)])


def _const_shift(net, x, rng):
    c = net.const(rng.standard_normal((1, C, 1, H)))
    return net.op("Sub", [c, x]) if rng.random() < 0.5 else net.op("Sub", [x, c])


def _channel_scale(net, x, rng):
    k = rng.standard_normal((C, 1, 1)) if rng.random() < 0.5 else np.array(rng.standard_normal())
    return net.op("Mul", [net.const(k), x])


def _spatial_scale(net, x, rng):  # a scale that varies over positions is not a channel map: no form
    return net.op("Mul", [x, net.const(rng.standard_normal((1, 1, H, H)))])


STEPS = {
    "conv": _pw_conv, "bottleneck": _pw_bottleneck, "residual": _linear_residual, "sub": _sub_branches,
    "self_sub": _self_sub, "shift": _const_shift, "scale": _channel_scale, "spatial_scale": _spatial_scale,
    "identity": lambda net, x, rng: net.op("Identity", [x]), "relu": lambda net, x, rng: net.op("Relu", [x]),
    "tanh": lambda net, x, rng: net.op("Tanh", [x]),
    "leaky": lambda net, x, rng: net.op("LeakyRelu", [x], alpha=float(rng.uniform(-0.5, 0.5))),
    "mixed_relu": lambda net, x, rng: net.op("Relu", [_pw_conv(net, x, rng)]),
    "mixed_leaky": lambda net, x, rng: net.op("LeakyRelu", [_pw_conv(net, x, rng)], alpha=float(rng.uniform(-1, 1))),
    "gate": lambda net, x, rng: net.op("Mul", [x, net.op("Sigmoid", [net.op("GlobalAveragePool", [x])])]),
    "conv3x3": lambda net, x, rng: net.op("Conv", [x, net.const(rng.standard_normal((C, C, 3, 3)) * 0.5)],
                                          pads=[1, 1, 1, 1]),
}


@seed(21)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(steps=st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=6), seed_=st.integers(0, 10_000),
       lo=st.floats(-3, 0.5), width=st.floats(0.01, 4))
def test_boxes_contain_values_along_pointwise_chains(steps, seed_, lo, width):
    rng = np.random.default_rng(seed_)
    net = Net(opset=17)
    x = net.input((1, C, H, H), name="x")
    for name in steps:
        x = STEPS[name](net, x, rng)
    model = net.build([x])
    hi = lo + width
    boxes = {n: b for n, b in _boxes(model, lo, hi).items() if isinstance(b, Box) and n != "x"}
    assert x in boxes
    shape = (1, C, H, H)
    points = [np.full(shape, lo), np.full(shape, hi)] + [rng.uniform(lo, hi, shape) for _ in range(4)]
    points += [np.where(rng.random(shape) < 0.5, lo, hi) for _ in range(4)]
    for p in points:
        for name, v in _run(model, list(boxes), p).items():
            b = boxes[name]
            assert np.all(v >= b.lo) and np.all(v <= b.hi), (steps, name, float(np.max(b.lo - v)),
                                                              float(np.max(v - b.hi)))


@pytest.mark.parametrize("blocks", [3])
def test_inverted_residual_stack_is_tighter_than_interval_arithmetic(blocks, monkeypatch):
    """MobileNetV2-style blocks (expand 1x1, ReLU, project 1x1, skip): the forms narrow the final box
    by a large factor compared to plain interval arithmetic, and both hold at sampled corners."""
    from lipaudit.ops import linear_forms

    rng = np.random.default_rng(3)
    net = Net(opset=17)
    x = net.input((1, 8, H, H), name="x")
    v = x
    for _ in range(blocks):
        e = net.op("Relu", [_bn(net, _conv1x1(net, v, rng.standard_normal((24, 8)) * 0.3), rng, 24)])
        v = net.op("Add", [v, _bn(net, _conv1x1(net, e, rng.standard_normal((8, 24)) * 0.3), rng, 8)])
    model = net.build([v])
    tight = _boxes(model, -3.0, 3.0)[v]
    monkeypatch.setattr(linear_forms, "FORM_OPS", set())
    loose = _boxes(model, -3.0, 3.0)[v]
    assert float(np.max(tight.hi - tight.lo)) < 0.5 * float(np.max(loose.hi - loose.lo))
    for p in [np.where(rng.random((1, 8, H, H)) < 0.5, -3.0, 3.0) for _ in range(6)]:
        got = _run(model, [v], p)[v]
        assert np.all(got >= tight.lo) and np.all(got <= tight.hi)


def test_relu_between_pointwise_convs_keeps_correlations(monkeypatch):
    """RegNet-style: relu(x + W2 relu(W1 x)) -> 1x1 conv. Through the ReLU as ``alpha z + e`` the next
    conv's box is narrower than plain interval arithmetic, and holds at sampled corners and points."""
    from lipaudit.ops import linear_forms

    rng = np.random.default_rng(7)
    net = Net(opset=17)
    x = net.input((1, 8, H, H), name="x")
    v = x
    for _ in range(3):
        e = net.op("Relu", [_conv1x1(net, v, rng.standard_normal((16, 8)) * 0.4)])
        v = net.op("Relu", [net.op("Add", [v, _conv1x1(net, e, rng.standard_normal((8, 16)) * 0.4)])])
    out = _conv1x1(net, v, rng.standard_normal((8, 8)))
    model = net.build([out])
    tight = _boxes(model, -3.0, 3.0)[out]
    monkeypatch.setattr(linear_forms, "FORM_OPS", set())
    loose = _boxes(model, -3.0, 3.0)[out]
    assert float(np.sum(tight.hi - tight.lo)) < 0.8 * float(np.sum(loose.hi - loose.lo))
    points = [np.where(rng.random((1, 8, H, H)) < 0.5, -3.0, 3.0) for _ in range(8)]
    points += [rng.uniform(-3, 3, (1, 8, H, H)) for _ in range(4)]
    for p in points:
        got = _run(model, [out], p)[out]
        assert np.all(got >= tight.lo) and np.all(got <= tight.hi)


# -- rounding and range (found by an adversarial review) --------------------------------------------------


@pytest.mark.parametrize("variant", ["mul", "conv", "bn"])
def test_matrices_that_underflow_are_refused(variant):
    """1e-170 x 1e-170 underflows when the factors are composed first, while the network scales x first:
    the composed form would collapse the box to ~0 although v reaches 1e110 (here: no form, sound box)."""
    net = Net(opset=17)
    x = net.input((1, 2, 2, 2), name="x")
    v = x
    for k in (1e-170, 1e-170, 1e300):
        if variant == "mul":
            v = net.op("Mul", [v, net.const(np.array(k))])
        elif variant == "conv":
            v = net.op("Conv", [v, net.const(np.eye(2)[:, :, None, None] * k)])
        else:
            v = net.op("BatchNormalization", [v, net.const(np.full(2, k)), net.const(np.zeros(2)),
                                              net.const(np.zeros(2)), net.const(np.ones(2))], epsilon=0.0)
    model = net.build([net.op("Relu", [v])])
    box = _boxes(model, -1e150, 1e150)[v]
    top = _run(model, [v], np.full((1, 2, 2, 2), 1e150))[v]
    assert np.all(top <= box.hi) and float(np.max(top)) > 1e100


def test_batchnorm_shift_that_cancels_keeps_its_rounding_allowance():
    """beta = mean * scale: the computed shift is 0, but its rounding error is not; on a narrow box
    around 0 the value (exact, and in float64) must stay inside, with and without forms."""
    from fractions import Fraction

    for trial in range(40):
        rng = np.random.default_rng(trial)
        gamma, var, mean = rng.uniform(0.5, 4, 1), rng.uniform(0.5, 4, 1), rng.uniform(-1, 1, 1)
        beta = mean * (gamma / np.sqrt(var))
        net = Net(opset=17)
        x = net.input((1, 1, 1, 1), name="x")
        y = net.op("BatchNormalization", [x] + [net.const(p) for p in (gamma, beta, mean, var)], epsilon=0.0)
        z = _conv1x1(net, net.op("Relu", [y]), np.ones((1, 1)))
        model = net.build([z])
        box = _boxes(model, -1e-10, 1e-10)[y]
        for t in (-1e-10, 1e-10):
            v = _run(model, [y], np.full((1, 1, 1, 1), t))[y].item()
            assert box.lo.item() <= v <= box.hi.item()
            exact = Fraction(float(gamma[0])) * (Fraction(t) - Fraction(float(mean[0]))) \
                / Fraction(float(np.sqrt(var[0]))) + Fraction(float(beta[0]))
            assert Fraction(box.lo.item()) - Fraction(1, 10**24) <= exact <= Fraction(box.hi.item()) + Fraction(1, 10**24)
