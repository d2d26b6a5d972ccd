"""Slope intervals of element-wise activations, for the expansion certificate.

An activation ``f`` whose derivative (Clarke generalised derivative at kinks)
lies in ``[lo, hi]`` everywhere has Jacobian ``D = c I + r S`` with
``c = (lo + hi) / 2``, ``r = (hi - lo) / 2`` and ``S`` diagonal, ``|S| <= 1``.
Every interval is the exact range of ``f'`` over the real line, rounded
outward (checked against sampled slopes in tests/certificate/test_slopes.py).
An activation not listed here is not split: the expansion cuts the graph there
and the product rule applies across it.

Intervals may be per channel (PRelu): ``lo`` and ``hi`` are then arrays over
the channel axis (axis 1) of the activation's input.
"""

from __future__ import annotations

import numpy as np

# derivative ranges over the real line, rounded outward
GELU = (-0.1290, 1.1290)  # Phi(x) + x phi(x): extremes -0.128904 and 1.128904 at -+sqrt(2)
GELU_TANH = (-0.1300, 1.1300)  # extremes -0.128993, 1.128993
SILU = (-0.1000, 1.1000)  # sigma(x)(1 + x(1 - sigma(x))): -0.099839, 1.099839
MISH = (-0.1130, 1.0890)  # -0.112526, 1.088498
HARDSWISH = (-0.5, 1.5)  # (2x + 3) / 6 on [-3, 3], 0 or 1 outside
ERF = (0.0, 1.1283792)  # 2/sqrt(pi) = 1.12837916...

FIXED = {
    "Relu": (0.0, 1.0),
    "Tanh": (0.0, 1.0),
    "Sigmoid": (0.0, 0.25),
    "Softplus": (0.0, 1.0),
    "Softsign": (0.0, 1.0),
    "Abs": (-1.0, 1.0),
    "HardSwish": HARDSWISH,
    "Erf": ERF,
    "Mish": MISH,
}


def slope_interval(node, const, in_shape: tuple[int, ...] | None):
    """``(lo, hi)`` for a node, as floats or per-channel arrays, or None when the op is not split.

    ``const(name)`` returns a constant input or None; ``in_shape`` is the shape of
    the data input (None when unknown).
    """
    op, attrs = node.op, node.attrs
    extra = set(attrs) - {"consumed_inputs"}
    if op in FIXED and not extra:
        return FIXED[op]
    if op == "LeakyRelu" and not extra - {"alpha"}:
        a = float(attrs.get("alpha", 0.01))
        return (min(a, 1.0), max(a, 1.0)) if np.isfinite(a) else None
    if op == "Elu" and not extra - {"alpha"}:
        a = float(attrs.get("alpha", 1.0))
        return (0.0, max(1.0, a)) if a > 0 and np.isfinite(a) else None
    if op == "Celu" and not extra - {"alpha"}:
        return (0.0, 1.0) if float(attrs.get("alpha", 1.0)) > 0 else None
    if op == "Selu" and not extra - {"alpha", "gamma"}:
        a = float(attrs.get("alpha", 1.67326319217681884765625))
        g = float(attrs.get("gamma", 1.05070102214813232421875))
        return (0.0, g * max(1.0, a)) if a > 0 and g > 0 and np.isfinite(a * g) else None
    if op == "HardSigmoid" and not extra - {"alpha", "beta"}:
        a = float(attrs.get("alpha", 0.2))
        return (min(0.0, a), max(0.0, a)) if np.isfinite(a) else None
    if op == "Gelu" and not extra - {"approximate"}:
        return {"none": GELU, "tanh": GELU_TANH}.get(attrs.get("approximate", "none"))
    if op == "Clip" and not extra - {"min", "max"}:
        # constant bounds only: slopes are 0 or 1
        if all(not name or const(name) is not None for name in node.inputs[1:3]):
            return (0.0, 1.0)
        return None
    if op == "PRelu" and not extra:
        slope = const(node.inputs[1]) if len(node.inputs) > 1 else None
        if slope is None:
            return None
        s = np.asarray(slope, dtype=np.float64)
        if not np.all(np.isfinite(s)) or s.size == 0:
            return None
        if s.size > 1 and in_shape is not None and _per_channel(s.shape, in_shape):
            s = s.reshape(-1)
            return np.minimum(s, 1.0), np.maximum(s, 1.0)
        return min(float(s.min()), 1.0), max(float(s.max()), 1.0)
    return None


def _per_channel(shape, in_shape) -> bool:
    """The slope broadcasts (numpy rules, right-aligned) along axis 1 of the input only."""
    r = len(in_shape)
    if len(shape) > r or r < 2:
        return False
    padded = (1,) * (r - len(shape)) + tuple(shape)
    return padded[1] == in_shape[1] and all(d == 1 for i, d in enumerate(padded) if i != 1)
