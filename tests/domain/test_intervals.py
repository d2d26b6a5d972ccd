"""Interval bounds on the input domain contain every value the network takes there.

Random small graphs (hypothesis, seeded) chain ops from the registry; the
model is run by onnx's reference evaluator (float64, the ONNX semantics) at the
corners of the box and at random points inside it, and every intermediate value
must lie inside its box. Ops whose boxes are lost must name the node.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from lipaudit.ops.box import Box, NoBox
from tests.soundness.graphs import Net, certify

C, H = 3, 5
SHAPE = (1, C, H, H)


def _w(rng, *shape, scale=0.6):
    return rng.standard_normal(shape) * scale


# each step: (name, builder(net, x, rng) -> new value); all keep the shape (1, C, H, H)
def _conv(net, x, rng):
    return net.op("Conv", [x, net.const(_w(rng, C, C, 3, 3)), net.const(_w(rng, C))], pads=[1, 1, 1, 1])


def _bn(net, x, rng):
    return net.op("BatchNormalization", [x, net.const(_w(rng, C)), net.const(_w(rng, C)), net.const(_w(rng, C)),
                                         net.const(np.abs(_w(rng, C)) + 0.2)])


def _se(net, x, rng):
    g = net.op("GlobalAveragePool", [x])
    g = net.op("Conv", [g, net.const(_w(rng, 2, C, 1, 1)), net.const(_w(rng, 2))])
    g = net.op("Relu", [g])
    g = net.op("Conv", [g, net.const(_w(rng, C, 2, 1, 1)), net.const(_w(rng, C))])
    g = net.op("HardSigmoid", [g], alpha=1 / 6, beta=0.5)
    return net.op("Mul", [x, g])


def _sigmoid_gate(net, x, rng):
    g = net.op("ReduceMean", [x, net.const(np.array([2, 3], dtype=np.int64))], keepdims=1)
    g = net.op("Sigmoid", [net.op("Conv", [g, net.const(_w(rng, C, C, 1, 1))])])
    return net.op("Mul", [g, x])


def _square(net, x, rng):
    return net.op("Mul", [x, x])


def _residual(net, x, rng):
    return net.op("Add", [x, net.op("Relu", [_conv(net, x, rng)])])


def _div(net, x, rng):
    return net.op("Div", [x, net.op("Add", [net.const(np.array(1.0)), net.op("Sigmoid", [x])])])


def _softmax(net, x, rng):
    return net.op("Softmax", [x], axis=1)


def _pool(net, x, rng):
    return net.op("MaxPool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1])


def _avg(net, x, rng):
    return net.op("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)


def _attention(net, x, rng):
    t = net.op("Reshape", [x, net.const(np.array([1, C, H * H], dtype=np.int64))])
    s = net.op("Softmax", [net.op("MatMul", [net.op("Transpose", [t], perm=[0, 2, 1]), t])], axis=-1)  # (1, HH, HH)
    out = net.op("MatMul", [t, s])  # (1, C, HH)
    return net.op("Reshape", [out, net.const(np.array(SHAPE, dtype=np.int64))])


def _positive(net, x, rng, floor=0.1):
    return net.op("Add", [net.op("Sigmoid", [x]), net.const(np.array(floor))])


def _sqrt(net, x, rng):
    return net.op("Sqrt", [net.op("Add", [net.op("Abs", [x]), net.const(np.array(0.1))])])


def _log(net, x, rng):
    return net.op("Log", [_positive(net, x, rng)])


def _recip(net, x, rng):
    return net.op("Reciprocal", [_positive(net, x, rng, 0.5)])


def _pow(net, x, rng):
    return net.op("Pow", [x, net.const(np.array(3.0))])


def _pow_even(net, x, rng):
    return net.op("Pow", [x, net.const(np.array(2.0))])


def _clip(net, x, rng):
    return net.op("Clip", [x, net.const(np.array(-0.5)), net.const(np.array(0.7))])


def _where(net, x, rng):
    return net.op("Where", [net.const(rng.random(SHAPE) > 0.5), x, net.op("Neg", [x])])


def _concat_slice(net, x, rng):
    both = net.op("Concat", [x, net.op("Tanh", [x])], axis=1)
    return net.op("Slice", [both, net.const(np.array([2], dtype=np.int64)), net.const(np.array([5], dtype=np.int64)),
                            net.const(np.array([1], dtype=np.int64))])


def _pad_reflect(net, x, rng):
    p = net.op("Pad", [x, net.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))], mode="reflect")
    return net.op("AveragePool", [p], kernel_shape=[3, 3])


def _resize(net, x, rng):
    up = net.op("Resize", [x, "", net.const(np.array([1, 1, 2, 2], dtype=np.float32))], mode="linear")
    return net.op("MaxPool", [up], kernel_shape=[2, 2], strides=[2, 2])


def _gemm(net, x, rng):
    flat = net.op("Flatten", [x])
    y = net.op("Gemm", [flat, net.const(_w(rng, C * H * H, C * H * H, scale=0.1)), net.const(_w(rng, C * H * H))])
    return net.op("Reshape", [y, net.const(np.array(SHAPE, dtype=np.int64))])


def _reduce(net, x, rng):
    s = net.op("ReduceSum", [x, net.const(np.array([1], dtype=np.int64))], keepdims=1)
    return net.op("Sub", [x, s])


def _layernorm(net, x, rng):
    return net.op("LayerNormalization", [x, net.const(_w(rng, H)), net.const(_w(rng, H))], axis=-1, epsilon=1e-3)


def _instnorm(net, x, rng):
    return net.op("InstanceNormalization", [x, net.const(_w(rng, C)), net.const(_w(rng, C))], epsilon=1e-3)


def _log_sum_exp(net, x, rng):
    return net.op("Sub", [x, net.op("ReduceLogSumExp", [x, net.const(np.array([1], dtype=np.int64))], keepdims=1)])


def _lp_pool(net, x, rng):
    return net.op("LpPool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], p=3)


def _unary(op, **attrs):
    return lambda net, x, rng: net.op(op, [x], **attrs)


STEPS = {
    "conv": _conv, "bn": _bn, "se": _se, "sigmoid_gate": _sigmoid_gate, "square": _square, "residual": _residual,
    "div": _div, "softmax": _softmax, "maxpool": _pool, "avgpool": _avg, "attention": _attention,
    "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"), "hardswish": _unary("HardSwish"),
    "gelu": _unary("Gelu"), "gelu_tanh": _unary("Gelu", approximate="tanh"), "mish": _unary("Mish"),
    "leaky": _unary("LeakyRelu", alpha=-0.3), "elu": _unary("Elu"), "softplus": _unary("Softplus"),
    "abs": _unary("Abs"), "neg": _unary("Neg"), "exp": _unary("Exp"), "erf": _unary("Erf"),
    "softsign": _unary("Softsign"), "selu": _unary("Selu"), "logsoftmax": _unary("LogSoftmax", axis=1),
    "sqrt": _sqrt, "log": _log, "recip": _recip, "pow3": _pow, "pow2": _pow_even, "clip": _clip, "where": _where,
    "concat_slice": _concat_slice, "pad_reflect": _pad_reflect, "resize": _resize, "gemm": _gemm, "reduce": _reduce, "lp_pool": _lp_pool,
    "layernorm": _layernorm, "instnorm": _instnorm, "logsumexp": _log_sum_exp,
}


def _model(steps, seed_: int):
    rng = np.random.default_rng(seed_)
    net = Net(opset=20)
    x = net.input(SHAPE, name="x")
    for name in steps:
        x = STEPS[name](net, x, rng)
    return net.build([x])


def _check_contains(model, lo, hi, seed_: int, samples: int = 6):
    """Every value's box contains the value at the box's corners and at random points inside it."""
    from onnx.reference import ReferenceEvaluator

    _, result = certify(model, input_range=(lo, hi))
    names = [o for n in model.graph.node for o in n.output]
    boxes = {n: result.boxes[n] for n in names if isinstance(result.boxes.get(n), Box)}
    assert boxes, "no value got bounds"
    sess = ReferenceEvaluator(model)
    rng = np.random.default_rng(seed_)
    points = [np.full(SHAPE, lo), np.full(SHAPE, hi)] + [rng.uniform(lo, hi, SHAPE) for _ in range(samples)]
    points.append(np.where(rng.random(SHAPE) < 0.5, lo, hi))  # a random corner
    for x in points:
        values = sess.run(list(boxes), {"x": x})
        for name, v in zip(boxes, values):
            b = boxes[name]
            assert np.all(v >= b.lo) and np.all(v <= b.hi), (
                f"{name}: value outside its box by {max(float(np.max(b.lo - v)), float(np.max(v - b.hi))):.3g}")
    return result


@seed(14)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(steps=st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=4), seed_=st.integers(0, 1000),
       lo=st.floats(-3, 0.5), width=st.floats(0.01, 4))
def test_boxes_contain_sampled_values(steps, seed_, lo, width):
    _check_contains(_model(steps, seed_), lo, lo + width, seed_)


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_is_bounded(step):
    """Each step alone gets a box on its output (no silent loss of bounds), and it contains the values."""
    model = _model([step], 3)
    result = _check_contains(model, -2.0, 1.5, 3, samples=3)
    out = model.graph.output[0].name
    assert isinstance(result.boxes[out], Box), result.boxes[out]


def test_op_without_interval_rule_names_the_node(monkeypatch):
    """A rule without an interval method: its output has no bounds, and a product that needs them is refused, naming it."""
    from lipaudit.ops import box

    monkeypatch.delitem(box.INTERVALS, "Tanh")
    net = Net(opset=17)
    x = net.input(SHAPE, name="x")
    t = net.op("Tanh", [x])
    z = net.op("Mul", [t, net.op("Relu", [x])])
    value, result = certify(net.build([z]), input_range=(-1, 1))
    assert value is None and isinstance(result.boxes[t], NoBox)
    message = result.refusals[0].message()
    assert "Mul" in message and "n1_Tanh" in message and "no interval rule" in message


def test_values_inside_a_folded_batchnorm_keep_sound_bounds():
    """A conv output feeding a folded BN carries the pair's constant in the walk (BN scale in the kernel):
    it must not be used to narrow the conv output's own bounds (a tiny BN scale would make them too narrow)."""
    rng = np.random.default_rng(5)
    net = Net(opset=17)
    x = net.input(SHAPE, name="x")
    y = net.op("Conv", [x, net.const(rng.standard_normal((C, C, 3, 3)) * 3), net.const(rng.standard_normal(C))],
               pads=[1, 1, 1, 1])
    z = net.op("BatchNormalization", [y, net.const(np.full(C, 1e-3)), net.const(np.zeros(C)), net.const(np.zeros(C)),
                                      net.const(np.ones(C))])
    w = net.op("BatchNormalization", [net.op("Relu", [z]), net.const(np.full(C, 1e-3)), net.const(np.zeros(C)),
                                      net.const(np.zeros(C)), net.const(np.ones(C))])
    v = net.op("Conv", [w, net.const(rng.standard_normal((C, C, 1, 1)))])
    result = _check_contains(net.build([v]), -3.0, 3.0, 5)
    assert result.layers[0].folded and result.layers[1].folded  # one BN folded after, one before


def test_global_lp_pool_bounds_contain_sampled_values():
    """GlobalLpPool has no onnx reference implementation: its bounds are computed directly; numpy is the truth."""
    net = Net(opset=17)
    x = net.input(SHAPE, name="x")
    y = net.op("GlobalLpPool", [x], p=3)
    _, result = certify(net.build([y]), input_range=(-1.0, 2.0))
    box = result.boxes[y]
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.uniform(-1, 2, SHAPE)
        v[rng.random(SHAPE) < 0.3] = 2.0
        out = np.sum(np.abs(v) ** 3, axis=(2, 3), keepdims=True) ** (1 / 3)
        assert np.all(out >= box.lo) and np.all(out <= box.hi)
