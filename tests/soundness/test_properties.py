"""Adversarial property suite: random small graphs per op family, certified or refused, never fooled.

Each example builds a small ONNX graph from one op family with edge-case
attributes (negative and large pads, every mode, unusual scales, broadcasting,
repeated inputs, several outputs, BatchNorm on every side) and certifies it,
with ``--output``/``--until`` at a random value. The certificate must be at
least the brute-force witness (verified secants in float64, see ``graphs.py``),
or the audit must refuse with a reason.

Examples are seeded (``derandomize``); ``--hypothesis-profile=deep`` runs many
more of them locally.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.soundness.graphs import Net, assert_sound, certify, witness

def _settings():
    """12 seeded examples per family in CI; ``--hypothesis-profile=deep`` (see conftest) for hundreds of fresh ones."""
    if settings.get_current_profile_name() == "deep":
        return settings(deadline=None, suppress_health_check=list(HealthCheck))
    return settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


FAST = _settings()


def _arr(draw, shape, scale=1.0):
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).standard_normal(shape) * scale


def _ints(*v):
    return np.array(v, dtype=np.int64)


@st.composite
def bn_params(draw, c):
    """BatchNorm statistics with extreme scales and variances (folding mistakes show up as big factors)."""
    scale = _arr(draw, c) * draw(st.sampled_from([1.0, 10.0, 0.01]))
    var = np.abs(_arr(draw, c)) * draw(st.sampled_from([1.0, 1e-3, 100.0])) + 1e-4
    return scale, _arr(draw, c), _arr(draw, c), var


def add_bn(draw, net: Net, x: str, c: int) -> str:
    scale, bias, mean, var = draw(bn_params(c))
    return net.op("BatchNormalization", [x, net.const(scale), net.const(bias), net.const(mean), net.const(var)],
                  epsilon=draw(st.sampled_from([1e-5, 0.1])))


def check(net: Net, values: list[str], draw):
    """Certify at every output choice the draw makes (all values, one value, --until) and compare with the witness."""
    target = draw(st.sampled_from(["last", "one", "several", "until"]))
    model_outs = [values[-1]]
    if target == "one":
        outs = [draw(st.sampled_from(values))]
    elif target == "several":
        outs = list(dict.fromkeys(draw(st.lists(st.sampled_from(values), min_size=2, max_size=3))))
    else:
        outs = [values[-1]]
    until = draw(st.sampled_from(values)) if target == "until" else None
    model = net.build(list(dict.fromkeys(model_outs + outs + ([until] if until else []))))
    if until is not None:
        node = next(n.name for n in model.graph.node if until in n.output)
        value, result = certify(model, until=node)
        if value is None:
            assert result.refusals
            return
        truth = witness(model, [until], points=1)
        assert value >= truth * (1 - 1e-6), f"--until {until}: certified {value} < witness {truth}"
        return
    assert_sound(model, outs, points=1)


@st.composite
def conv_chain(draw):
    net = Net(opset=draw(st.sampled_from([14, 17])))  # onnx's reference BN-9 (opsets 9-13) computes batch statistics
    c_in = draw(st.integers(1, 2))
    h, w = draw(st.integers(3, 5)), draw(st.integers(3, 5))
    x = net.input((1, c_in, h, w))
    values = []
    cur, c = x, c_in
    if draw(st.booleans()):
        cur = add_bn(draw, net, cur, c)  # BN before the first conv: never foldable into it
        values.append(cur)
    for _ in range(draw(st.integers(1, 2))):
        groups = draw(st.sampled_from([1, c])) if c > 1 else 1
        c_out = draw(st.sampled_from([groups, 2 * groups]))
        k = draw(st.integers(1, 3))
        dil = draw(st.integers(1, 2))
        pads = [draw(st.integers(0, 2)) for _ in range(4)]
        stride = [draw(st.integers(1, 2)) for _ in range(2)]
        eff = dil * (k - 1) + 1
        if h + pads[0] + pads[2] < eff or w + pads[1] + pads[3] < eff:
            break
        weight = _arr(draw, (c_out, c // groups, k, k))
        inputs = [cur, net.const(weight)]
        if draw(st.booleans()):
            inputs.append(net.const(_arr(draw, c_out)))
        cur = net.op("Conv", inputs, pads=pads, strides=stride, dilations=[dil, dil], group=groups)
        h = (h + pads[0] + pads[2] - eff) // stride[0] + 1
        w = (w + pads[1] + pads[3] - eff) // stride[1] + 1
        c = c_out
        values.append(cur)
        if draw(st.booleans()):
            cur = add_bn(draw, net, cur, c)
            values.append(cur)
        act = draw(st.sampled_from(["", "Relu", "LeakyRelu", "Tanh"]))
        if act:
            cur = net.op(act, [cur], **({"alpha": draw(st.sampled_from([-3.0, 0.1, 2.0]))} if act == "LeakyRelu" else {}))
            values.append(cur)
        if draw(st.booleans()):
            cur = add_bn(draw, net, cur, c)  # BN after an activation: a diagonal map, not a fold
            values.append(cur)
    if not values:
        values.append(net.op("Relu", [cur]))
    return net, values


@given(st.data())
@FAST
def test_conv_bn_chains(data):
    net, values = data.draw(conv_chain())
    check(net, values, data.draw)


@st.composite
def pad_graph(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "edge", "wrap"]))
    h, w = draw(st.integers(2, 4)), draw(st.integers(2, 5))
    net = Net(opset=draw(st.sampled_from([13, 19])))
    x = net.input((1, 1, h, w))
    lo = -1 if mode != "constant" else -2
    pads = [0, 0, draw(st.integers(lo, 4)), draw(st.integers(lo, 5)), 0, 0, draw(st.integers(lo, 4)),
            draw(st.integers(lo, 5))]
    if h + pads[2] + pads[6] < 1 or w + pads[3] + pads[7] < 1:
        pads[2] = pads[6] = pads[3] = pads[7] = 1
    if mode == "reflect" and net.opset < 19:
        pads = [max(p, 0) for p in pads]  # negative pads with reflect: opset 19 semantics only
    if mode == "reflect" and (h + min(pads[2], 0) + min(pads[6], 0) < 2 or w + min(pads[3], 0) + min(pads[7], 0) < 2):
        pads = [max(p, 0) for p in pads]
    if mode == "reflect":  # runtimes refuse reflecting further than the (cropped) axis is long
        for i, n in ((2, h), (3, w)):
            kept = n + min(pads[i], 0) + min(pads[i + 4], 0)
            pads[i], pads[i + 4] = min(pads[i], kept - 1), min(pads[i + 4], kept - 1)
    if mode == "wrap" and net.opset < 19:
        mode = "edge"
    inputs = [x, net.const(_ints(*pads))]
    if mode == "constant" and draw(st.booleans()):
        inputs.append(net.const(np.array(draw(st.sampled_from([0.0, 3.0, -1e3])))))
    y = net.op("Pad", inputs, mode=mode)
    values = [y]
    if draw(st.booleans()):
        values.append(net.op("Add", [y, y]))  # a repeated input
    return net, values


@given(st.data())
@FAST
def test_pads(data):
    net, values = data.draw(pad_graph())
    check(net, values, data.draw)


@st.composite
def pool_graph(draw):
    op = draw(st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"]))
    h, w = draw(st.integers(3, 5)), draw(st.integers(3, 5))
    net = Net(opset=17)
    x = net.input((1, 2, h, w))
    attrs = {}
    if not op.startswith("Global"):
        k = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
        attrs = {"kernel_shape": k, "strides": [draw(st.integers(1, 3)), draw(st.integers(1, 2))],
                 "pads": [draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)),
                          draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1))],
                 "ceil_mode": int(draw(st.booleans()))}
        if op == "AveragePool":
            attrs["count_include_pad"] = int(draw(st.booleans()))
        else:
            attrs["dilations"] = [draw(st.integers(1, 2)), 1]
            d = attrs["dilations"][0]
            if d * (k[0] - 1) + 1 > h + attrs["pads"][0] + attrs["pads"][2]:
                attrs["dilations"] = [1, 1]
    y = net.op(op, [x], **attrs)
    values = [y]
    if draw(st.booleans()):
        values.append(add_bn(draw, net, y, 2))
    return net, values


@given(st.data())
@FAST
def test_pooling(data):
    net, values = data.draw(pool_graph())
    check(net, values, data.draw)


@st.composite
def resize_graph(draw):
    mode = draw(st.sampled_from(["nearest", "linear", "cubic"]))
    ctm = draw(st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]))
    net = Net(opset=draw(st.sampled_from([13, 19])))
    h, w = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    x = net.input((1, 1, h, w))
    scales = [1.0, 1.0] + [draw(st.sampled_from([0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 3.0])) for _ in range(2)]
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = draw(st.sampled_from(["round_prefer_floor", "floor", "ceil"]))
    if mode == "cubic":
        attrs["cubic_coeff_a"] = draw(st.sampled_from([-0.75, -0.5]))
        attrs["exclude_outside"] = int(draw(st.booleans()))
    if net.opset >= 18 and draw(st.booleans()):
        y = net.op("Resize", [x, "", net.const(np.array(scales[2:], dtype=np.float32))], axes=[2, 3], **attrs)
    else:
        y = net.op("Resize", [x, net.const(np.zeros(0)), net.const(np.array(scales, dtype=np.float32))], **attrs)
    return net, [y]


@given(st.data())
@FAST
def test_resize(data):
    net, values = data.draw(resize_graph())
    check(net, values, data.draw)


@st.composite
def residual_graph(draw):
    """Adds, Subs, Concats and Splits of branches (some sharing an input), several outputs."""
    net = Net(opset=17)
    x = net.input((1, 2, 3, 3))
    a = net.op("Conv", [x, net.const(_arr(draw, (2, 2, 3, 3)))], pads=[1, 1, 1, 1])
    if draw(st.booleans()):
        a = add_bn(draw, net, a, 2)
    b = draw(st.sampled_from([x, a]))
    op = draw(st.sampled_from(["Add", "Sub", "Sum", "Concat", "Max", "Min", "Mean"]))
    shape = [1, 2, 3, 3]
    if op == "Concat":
        axis = draw(st.sampled_from([1, 2, -1]))
        shape[axis] *= 3
        y = net.op("Concat", [a, b, a], axis=axis)
    elif op in ("Sum", "Mean", "Max", "Min"):
        y = net.op(op, [a, b, x])
    else:
        y = net.op(op, [a, draw(st.sampled_from([b, a]))])
    values = [a, y]
    if draw(st.booleans()):
        const_shape = [d if draw(st.booleans()) else 1 for d in shape]  # broadcast constant scale
        y2 = net.op("Mul", [y, net.const(_arr(draw, tuple(const_shape), 3.0))])
        values.append(y2)
    if draw(st.booleans()):
        axis = draw(st.sampled_from([2, 3]))
        parts = net.op("Split", [values[-1], net.const(_ints(1, shape[axis] - 1))], n_out=2, axis=axis)
        values.extend(parts)
    return net, values


@given(st.data())
@FAST
def test_residual_dags(data):
    net, values = data.draw(residual_graph())
    check(net, values, data.draw)


@st.composite
def activation_graph(draw):
    """Element-wise ops at parameter extremes, and the patterns exporters emit."""
    net = Net(opset=draw(st.sampled_from([17, 18, 20])))
    x = net.input((1, 6))
    choice = draw(st.sampled_from(["LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "Clip", "PRelu",
                                   "hardswish", "silu", "gelu", "Softplus", "ThresholdedRelu", "Shrink"]))
    a = draw(st.sampled_from([-2.0, -0.5, 0.01, 0.3, 1.0, 1.7, 4.0]))
    if choice in ("LeakyRelu", "Elu", "Celu"):
        if choice == "Celu" and a == 0:
            a = 1.0
        y = net.op(choice, [x], alpha=a)
    elif choice == "Selu":
        y = net.op(choice, [x], alpha=abs(a), gamma=a)
    elif choice == "HardSigmoid":
        y = net.op(choice, [x], alpha=a, beta=draw(st.sampled_from([0.0, 0.5, 2.0])))
    elif choice == "Clip":
        y = net.op(choice, [x, net.const(np.array(min(a, 0.5))), net.const(np.array(max(a, 0.5)))])
    elif choice == "PRelu":
        y = net.op(choice, [x, net.const(_arr(draw, (6,), 2.0))])
    elif choice == "hardswish":
        hs = net.op("HardSigmoid", [x], alpha=abs(a) / 4, beta=draw(st.sampled_from([0.5, 0.2])))
        y = net.op("Mul", draw(st.permutations([x, hs])))
    elif choice == "silu":
        s = net.op("Sigmoid", [net.op("Mul", [x, net.const(np.array(a))])])
        y = net.op("Mul", draw(st.permutations([x, s])))
    elif choice == "gelu":
        k = draw(st.sampled_from([1 / np.sqrt(2), 0.7, 0.5]))
        e = net.op("Erf", [net.op("Mul", [x, net.const(np.array(k))])])
        h = net.op("Mul", [net.op("Add", [e, net.const(np.array(1.0))]), net.const(np.array(0.5))])
        y = net.op("Mul", [x, h])
    elif choice in ("ThresholdedRelu", "Shrink"):
        y = net.op(choice, [x], **({"alpha": abs(a)} if choice == "ThresholdedRelu" else {"lambd": abs(a), "bias": 0.1}))
    else:
        y = net.op(choice, [x])
    return net, [y]


@given(st.data())
@FAST
def test_activations(data):
    net, values = data.draw(activation_graph())
    check(net, values, data.draw)


@st.composite
def dense_graph(draw):
    """Gemm/MatMul with every transpose and broadcast, BN after (folded only when the layout matches)."""
    net = Net(opset=15)
    rank = draw(st.sampled_from([2, 3]))
    x = net.input((1, 4) if rank == 2 else (1, 3, 4))
    if rank == 2 and draw(st.booleans()):
        trans_b = int(draw(st.booleans()))
        w = _arr(draw, (3, 4) if trans_b else (4, 3))
        inputs = [x, net.const(w)]
        if draw(st.booleans()):
            inputs.append(net.const(_arr(draw, draw(st.sampled_from([(3,), (1, 3), (1, 1)])))))
        y = net.op("Gemm", inputs, transB=trans_b, alpha=draw(st.sampled_from([1.0, -2.5])),
                   beta=draw(st.sampled_from([1.0, 0.0, 3.0])))
    else:
        y = net.op("MatMul", [x, net.const(_arr(draw, (4, 3)))])
    values = [y]
    if draw(st.booleans()):
        y = net.op("Add", [y, net.const(_arr(draw, draw(st.sampled_from([(3,), (1, 3, 1, 1), (3, 1, 1)]))))])
        values.append(y)
    if draw(st.booleans()):
        c = {2: 3}.get(rank, 3)
        values.append(add_bn(draw, net, y, c))
    return net, values


@given(st.data())
@FAST
def test_dense_layouts(data):
    net, values = data.draw(dense_graph())
    check(net, values, data.draw)
