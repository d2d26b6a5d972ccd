"""HardSwish spelled with Clip (Paddle, relu6 exporters): ``s * x * clip(k x + b, m, M)`` gets a global constant.

The slope lies in ``hull{m, M, 2m - b, 2M - b}``; checked against every secant on a dense grid (onnx
reference evaluator). A clip open on one side (``x * relu(k x + b)``) has an unbounded slope: refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from tests.soundness.graphs import Net, certify

N = 4001


def _clip_gate(k, b, m, top, s, n, legacy=False):
    net = Net(opset=10 if legacy else 17)
    x = net.input((1, n), name="x")
    arg = net.op("Add", [net.op("Mul", [x, net.const(np.array(k))]), net.const(np.array(b))])
    if legacy:
        clip = net.op("Clip", [arg], **({"min": m} if m is not None else {}), **({"max": top} if top is not None else {}))
    else:
        clip = net.op("Clip", [arg, net.const(np.array(m)) if m is not None else "",
                               net.const(np.array(top)) if top is not None else ""])
    out = net.op("Div", [net.op("Mul", [x, clip]), net.const(np.array(1 / s))])
    return net.build([out]), out


def _grid_max_secant(model) -> float:
    x = np.linspace(-12, 12, N).reshape(1, N)
    y = ReferenceEvaluator(model).run(None, {"x": x})[0].reshape(-1)
    return float(np.max(np.abs(np.diff(y) / np.diff(x.ravel()))))


@pytest.mark.parametrize("k,b,m,top,s,legacy", [
    (1.0, 3.0, 0.0, 6.0, 1 / 6, False),  # Paddle's hardswish: x * clip(x + 3, 0, 6) / 6
    (1.0, 3.0, 0.0, 6.0, 1 / 6, True),  # min/max as attributes (opset < 11)
    (2.0, -1.0, -1.0, 2.0, 1.0, False),
    (-0.5, 0.5, -2.0, 0.25, -3.0, False),
])
def test_clip_gates_are_certified_above_every_secant(k, b, m, top, s, legacy):
    model, out = _clip_gate(k, b, m, top, s, 8, legacy)
    value, result = certify(model, outputs=[out])
    assert value is not None, [r.message() for r in result.refusals]
    truth = _grid_max_secant(_clip_gate(k, b, m, top, s, N, legacy)[0])
    assert truth * (1 - 1e-9) <= value <= truth * 1.01 + 1e-9  # sound and tight (the hull is attained)


def test_open_clip_gate_is_refused_without_a_domain():
    model, out = _clip_gate(1.0, 3.0, 0.0, None, 1.0, 8)
    value, result = certify(model, outputs=[out])
    assert value is None and "--input-range" in result.refusals[0].message()
