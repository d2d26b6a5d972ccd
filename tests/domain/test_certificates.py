"""Certificates on the input domain are at least the largest Jacobian norm found inside the box.

- graphs from the interval family (tests/domain/test_intervals.py), witnessed by
  onnx-reference secants and finite-difference Jacobians at points inside the box;
- squeeze-excite blocks in the style of MobileNetV3 (HardSigmoid gate) and
  EfficientNet (SiLU, Sigmoid gate), built in torch and exported to ONNX, witnessed
  by dense autograd Jacobians at points inside the box: they must get a network
  certificate with ``--input-range -3,3``, reported as holding on that domain only.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.domain.test_intervals import STEPS, _model
from tests.soundness.graphs import assert_sound, certify


@seed(1414)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(steps=st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=3), seed_=st.integers(0, 1000),
       lo=st.floats(-3, 0.5), width=st.floats(0.05, 3))
def test_domain_certificate_bounds_secants_inside_the_box(steps, seed_, lo, width):
    model = _model(steps, seed_)
    value = assert_sound(model, points=2, input_range=(lo, lo + width))
    assert value is not None, f"{steps}: should be certified on the domain"


@pytest.mark.parametrize("step", ["se", "sigmoid_gate", "square", "div", "attention", "exp", "log", "sqrt", "recip"])
def test_products_need_a_domain_and_say_so(step):
    model = _model([step], 0)
    value, result = certify(model)
    assert value is None
    message = result.refusals[0].message()
    assert "--input-range" in message and result.refusals[0].node.startswith("n")
    value, result = certify(model, input_range=(-3, 3))
    assert value is not None and result.network["certified"].valid_on == [-3.0, 3.0]
    assert result.domain_uses


def _torch_blocks():
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c, squeeze, act, gate):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
            self.act, self.gate = act, gate

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    class MobileNetV3Block(nn.Module):  # expand, depthwise, SE with HardSigmoid, project, residual
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardswish())
            self.expand = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.Hardswish())
            self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.Hardswish())
            self.se = SE(16, 4, nn.ReLU(), nn.Hardsigmoid())
            self.project = nn.Sequential(nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8))
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            y = self.stem(x)
            y = y + self.project(self.se(self.dw(self.expand(y))))
            return self.head(y.mean((2, 3)))

    class EfficientNetBlock(nn.Module):  # SiLU everywhere, SE with a Sigmoid gate
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.SiLU())
            self.se = SE(8, 2, nn.SiLU(), nn.Sigmoid())
            self.project = nn.Sequential(nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6))

        def forward(self, x):
            return self.project(self.se(self.dw(self.stem(x))))

    class RegNetYBlocks(nn.Module):  # two blocks: 1x1, group conv, SE, 1x1, ReLU after the skip addition
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())

            def block():
                return nn.ModuleDict({
                    "a": nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU()),
                    "b": nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU()),
                    "se": SE(8, 2, nn.ReLU(), nn.Sigmoid()),
                    "c": nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))})

            self.blocks = nn.ModuleList([block(), block()])

        def forward(self, x):
            y = self.stem(x)
            for b in self.blocks:  # the next block's 1x1 conv composes with this one's through the ReLU
                y = torch.relu(y + b["c"](b["se"](b["b"](b["a"](y)))))
            return y

    torch.manual_seed(0)
    blocks = {"mobilenet_v3": MobileNetV3Block(), "efficientnet": EfficientNetBlock(), "regnet_y": RegNetYBlocks()}
    for block in blocks.values():
        for m in block.modules():  # non-trivial BatchNorm statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
        block.eval()
    return blocks


@pytest.mark.parametrize("name", ["mobilenet_v3", "efficientnet", "regnet_y"])
def test_squeeze_excite_blocks_get_a_domain_certificate_above_dense_jacobians(name):
    import onnx
    import torch

    block = _torch_blocks()[name]
    shape = (1, 3, 6, 6)
    buf = io.BytesIO()
    torch.onnx.export(block, (torch.zeros(shape),), buf, dynamo=False, opset_version=17)
    model = onnx.load_from_string(buf.getvalue())
    value, result = certify(model)
    assert value is None and any(r.op == "Mul" for r in result.refusals)  # no global constant for the gate
    assert len(result.layers) >= 4  # the layers are measured all the same
    value, result = certify(model, input_range=(-3, 3))
    assert value is not None and np.isfinite(value), result.refusals
    assert result.network["certified"].valid_on == [-3.0, 3.0]
    # dense autograd Jacobians at points inside the box (corners included): the certificate bounds them all
    block = block.double()
    rng = np.random.default_rng(0)
    points = [rng.uniform(-3, 3, shape) for _ in range(6)] + [np.where(rng.random(shape) < 0.5, -3.0, 3.0)]
    best = 0.0
    for x in points:
        jac = torch.autograd.functional.jacobian(block, torch.as_tensor(x))
        jac = jac.reshape(-1, int(np.prod(shape)))
        best = max(best, float(torch.linalg.matrix_norm(jac, ord=2)))
    assert value >= best * (1 - 1e-9), (value, best)
    assert value < best * 1e6  # a useful number, not just a finite one
