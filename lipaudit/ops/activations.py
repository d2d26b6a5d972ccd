"""Element-wise activations: the output's constant is the input's times the largest |slope|.

Each constant is the supremum of |f'| over the real line, rounded up (checked
against sampled slopes and Jacobians in tests/test_activation_constants.py).
Attributes that change the slope are read; values for which no global constant
exists (e.g. Celu with a non-positive alpha) are refused.
"""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import CONST, DATA, rule

# Largest |derivative| over the real line, rounded *up*.
GELU_SLOPE = 1.1290  # Phi(x) + x phi(x), max at x = sqrt(2): 1.12888...
GELU_TANH_SLOPE = 1.1300  # tanh approximation of GELU: max 1.12967 (see tests)
SILU_SLOPE = 1.1000  # sigma(x)(1 + x(1 - sigma(x))), max 1.09984 at x = 2.3994
ERF_SLOPE = 1.12838  # 2 / sqrt(pi) = 1.128379...
HARDSWISH_SLOPE = 1.5  # (2x + 3) / 6 at x = 3
MISH_SLOPE = 1.089  # x tanh(softplus(x)): max slope 1.08850 near x = 1.19

LEGACY = ("consumed_inputs",)  # opset-1 memory hint, no effect on values

FIXED = {
    "Relu": 1.0,
    "Tanh": 1.0,
    "Sigmoid": 0.25,
    "Softplus": 1.0,
    "Softsign": 1.0,
    "Abs": 1.0,
    "Neg": 1.0,
    "HardSwish": HARDSWISH_SLOPE,
    "Erf": ERF_SLOPE,
    "Mish": MISH_SLOPE,
}
_FIXED_SLOTS = {"X": DATA, "input": DATA}  # the data slot is called X or input depending on the op


def _unary(node, ctx, factor: float, why: str | None = None):
    ctx.note_factor(node, factor, why)
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule(*FIXED, inputs=_FIXED_SLOTS, attrs=LEGACY, kind="diagonal",
      constant="largest |slope|: Relu/Tanh/Softplus/Softsign/Abs/Neg 1, Sigmoid 1/4, HardSwish 1.5, Erf 2/sqrt(pi), Mish 1.089")
def fixed_slope(node, ctx):
    return _unary(node, ctx, FIXED[node.op])


@rule("LeakyRelu", inputs={"X": DATA}, attrs=("alpha",) + LEGACY, kind="diagonal", constant="max(1, |alpha|)")
def leaky_relu(node, ctx):
    return _unary(node, ctx, max(1.0, abs(float(node.attrs.get("alpha", 0.01)))))


@rule("Elu", inputs={"X": DATA}, attrs=("alpha",) + LEGACY, kind="diagonal",
      constant="max(1, |alpha|) (slopes alpha*e^x on x<0, 1 on x>0)")
def elu(node, ctx):
    return _unary(node, ctx, max(1.0, abs(float(node.attrs.get("alpha", 1.0)))))


@rule("Celu", inputs={"X": DATA}, attrs=("alpha",), kind="diagonal",
      constant="1 for alpha > 0 (slope exp(x/alpha) <= 1 on x<0); alpha <= 0 refused (unbounded or undefined)")
def celu(node, ctx):
    alpha = float(node.attrs.get("alpha", 1.0))
    if not alpha > 0:
        ctx.fail(node, f"alpha={alpha:g}: the slope exp(x/alpha) is unbounded (or undefined) for alpha <= 0")
    return _unary(node, ctx, 1.0)


@rule("Selu", inputs={"X": DATA}, attrs=("alpha", "gamma") + LEGACY, kind="diagonal",
      constant="|gamma| * max(1, |alpha|)")
def selu(node, ctx):
    alpha = float(node.attrs.get("alpha", 1.67326319217681884765625))
    gamma = float(node.attrs.get("gamma", 1.05070102214813232421875))
    return _unary(node, ctx, abs(gamma) * max(1.0, abs(alpha)))


@rule("HardSigmoid", inputs={"X": DATA}, attrs=("alpha", "beta") + LEGACY, kind="diagonal", constant="|alpha|")
def hard_sigmoid(node, ctx):
    return _unary(node, ctx, abs(float(node.attrs.get("alpha", 0.2))))


@rule("Gelu", inputs={"X": DATA}, attrs=("approximate",), kind="diagonal",
      constant="1.1290 (exact GELU), 1.1300 (approximate='tanh')")
def gelu(node, ctx):
    approximate = node.attrs.get("approximate", "none")
    if approximate == "none":
        return _unary(node, ctx, GELU_SLOPE)
    if approximate == "tanh":
        return _unary(node, ctx, GELU_TANH_SLOPE)
    ctx.fail(node, f"unknown approximate={approximate!r}")


@rule("Clip", inputs={"input": DATA, "min": DATA, "max": DATA}, attrs=("min", "max") + LEGACY, kind="diagonal",
      constant="1; an input-dependent min or max adds like Max/Min (root-sum-square with broadcast copies)")
def clip(node, ctx):
    # clip(x, lo, hi) = min(max(x, lo), hi): each output moves by at most max(|dx|, |dlo|, |dhi|)
    out = node.outputs[0]
    bounds = [ctx.scale(ctx.lip(b), ctx.broadcast_factor(b, out, node)) for b in node.inputs[1:3] if b and ctx.depends(b)]
    ctx.note_factor(node, 1.0)
    if not bounds:
        return [ctx.lip(node.inputs[0])]
    return [ctx.rss([ctx.lip(node.inputs[0])] + bounds)]


@rule("PRelu", inputs={"X": DATA, "slope": CONST}, attrs=LEGACY, kind="diagonal", constant="max(1, max|slope|)")
def prelu(node, ctx):
    slope = np.asarray(ctx.const(node.inputs[1]), dtype=np.float64)
    factor = max(1.0, float(np.max(np.abs(slope)))) if slope.size else 1.0
    return _unary(node, ctx, factor if np.all(np.isfinite(slope)) else math.inf)


def _axis_of(node, ctx) -> set[int]:
    shape = ctx.graph.shapes.get(node.inputs[0])
    if shape is None:
        return set()
    rank = len(shape)
    legacy = ctx.opset() < 13
    axis = int(node.attrs.get("axis", 1 if legacy else -1)) % max(rank, 1)
    return set(range(axis, rank)) if legacy else {axis}


@rule("Softmax", inputs={"input": DATA}, attrs=("axis",), kind="nonlinear",
      constant="1/2 (Jacobian diag(p) - p p^T: Gershgorin row sums 2 p_i (1 - p_i) <= 1/2)", batch_axes=_axis_of)
def softmax(node, ctx):
    return _unary(node, ctx, 0.5)


@rule("LogSoftmax", inputs={"input": DATA}, attrs=("axis",), kind="nonlinear",
      constant="sqrt(2 (n - 1)) for n entries per softmax (||J||_2 <= sqrt(||J||_1 ||J||_inf), column sums <= n - 1, row sums <= 2)",
      batch_axes=_axis_of)
def log_softmax(node, ctx):
    # Jacobian I - 1 p^T: column sums 1 + (n - 2) p_j <= n - 1, row sums 2 (1 - p_i) <= 2
    shape = ctx.shape(node.inputs[0], node)
    n = int(np.prod([shape[a] for a in _axis_of(node, ctx)])) if shape else 1
    return _unary(node, ctx, math.sqrt(2 * max(n - 1, 1)))
