"""Element-wise activations: the output's constant is the input's times the largest slope."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import rule

# Largest |derivative| over the real line, rounded *up*.
GELU_SLOPE = 1.1290  # Phi(x) + x phi(x), max at x = sqrt(2): 1.12888...
SILU_SLOPE = 1.1000  # sigma(x)(1 + x(1 - sigma(x))), max 1.09984 at x = 2.3994
ERF_SLOPE = 1.12838  # 2 / sqrt(pi) = 1.128379...
HARDSWISH_SLOPE = 1.5  # (2x + 3) / 6 at x = 3
MISH_SLOPE = 1.089  # x tanh(softplus(x)): max slope 1.08850 near x = 1.19

FIXED = {
    "Relu": 1.0,
    "Tanh": 1.0,
    "Sigmoid": 0.25,
    "Softplus": 1.0,
    "Softsign": 1.0,
    "Abs": 1.0,
    "Neg": 1.0,
    "Clip": 1.0,
    "Celu": 1.0,  # slope exp(x / alpha) <= 1 on the negative side
    "HardSwish": HARDSWISH_SLOPE,
    "Erf": ERF_SLOPE,
    "Mish": MISH_SLOPE,
}


def _unary(node, ctx, factor: float):
    ctx.note_factor(node, factor)
    return [ctx.scale(ctx.lip(node.inputs[0]), factor)]


@rule(*FIXED)
def fixed_slope(node, ctx):
    return _unary(node, ctx, FIXED[node.op])


@rule("LeakyRelu")
def leaky_relu(node, ctx):
    return _unary(node, ctx, max(1.0, abs(float(node.attrs.get("alpha", 0.01)))))


@rule("Elu")
def elu(node, ctx):
    return _unary(node, ctx, max(1.0, abs(float(node.attrs.get("alpha", 1.0)))))


@rule("Selu")
def selu(node, ctx):
    alpha = float(node.attrs.get("alpha", 1.67326319217681884765625))
    gamma = float(node.attrs.get("gamma", 1.05070102214813232421875))
    return _unary(node, ctx, abs(gamma) * max(1.0, abs(alpha)))


@rule("HardSigmoid")
def hard_sigmoid(node, ctx):
    return _unary(node, ctx, abs(float(node.attrs.get("alpha", 0.2))))


@rule("Gelu")
def gelu(node, ctx):
    return _unary(node, ctx, GELU_SLOPE)


@rule("PRelu")
def prelu(node, ctx):
    slope = ctx.const(node.inputs[1])
    if slope is None:
        ctx.fail(node, "the slope is not a constant")
    return _unary(node, ctx, max(1.0, float(np.max(np.abs(slope)))))


@rule("Softmax")
def softmax(node, ctx):
    # Jacobian diag(p) - p p^T is PSD with norm <= 1/2 (a variance of unit-norm values)
    return _unary(node, ctx, 0.5)


@rule("LogSoftmax")
def log_softmax(node, ctx):
    # Jacobian I - 1 p^T: ||J||_1 <= n - 1, ||J||_inf <= 2, so ||J||_2 <= sqrt(2 (n - 1))
    shape = ctx.shape(node.inputs[0], node)
    axis = int(node.attrs.get("axis", -1 if (ctx.graph.source.get("opset") or 13) >= 13 else 1))
    axis %= len(shape)
    n = shape[axis] if (ctx.graph.source.get("opset") or 13) >= 13 else int(np.prod(shape[axis:]))
    return _unary(node, ctx, math.sqrt(2 * max(n - 1, 1)))
