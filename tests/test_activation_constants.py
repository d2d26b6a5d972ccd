"""The activation constants are upper bounds on the true slopes / Jacobian norms (sampled densely)."""

from __future__ import annotations

import math

import torch

from lipaudit.ops.activations import ERF_SLOPE, GELU_SLOPE, HARDSWISH_SLOPE, MISH_SLOPE, SILU_SLOPE


def _max_slope(fn) -> float:
    x = torch.linspace(-12, 12, 200001, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return float(g.abs().max())


def test_scalar_slopes_are_upper_bounds_and_tight():
    for fn, bound in [
        (torch.nn.functional.gelu, GELU_SLOPE),
        (torch.nn.functional.silu, SILU_SLOPE),
        (torch.nn.functional.hardswish, HARDSWISH_SLOPE),
        (torch.nn.functional.mish, MISH_SLOPE),
        (torch.erf, ERF_SLOPE),
        (torch.sigmoid, 0.25),
        (torch.tanh, 1.0),
        (torch.nn.functional.softplus, 1.0),
    ]:
        slope = _max_slope(fn)
        assert slope <= bound, (fn, slope, bound)
        assert slope >= bound * 0.999, (fn, slope, bound)  # not loose either


def test_softmax_and_log_softmax_jacobian_norms():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 10):
        worst_sm, worst_lsm = 0.0, 0.0
        for scale in (0.1, 1.0, 5.0, 30.0):
            for _ in range(50):
                x = torch.randn(n, generator=gen, dtype=torch.float64) * scale
                j = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, 0), x)
                worst_sm = max(worst_sm, float(torch.linalg.matrix_norm(j, 2)))
                j = torch.autograd.functional.jacobian(lambda v: torch.log_softmax(v, 0), x)
                worst_lsm = max(worst_lsm, float(torch.linalg.matrix_norm(j, 2)))
        assert worst_sm <= 0.5
        assert worst_lsm <= math.sqrt(2 * (n - 1))
