"""Add/Sum/Sub/Mean/Mul/Div/Max/Min/Where: sums of input constants, constant scales, known patterns."""

from __future__ import annotations

import math

import numpy as np

from lipaudit.ops import CONST, DATA, rule
from lipaudit.ops.activations import SILU_SLOPE

LEGACY_BROADCAST = ("broadcast", "axis", "consumed_inputs")  # opset 1-6 broadcasting: copies stay uniform
# x * (c + erf(k x)): slope (c - 1) + g(t), t = k x, g(t) = 1 + erf(t) + (2/sqrt(pi)) t exp(-t^2) in
# [-0.257810, 2.257810] (extremes at t = -1, 1) for every k; so |slope| <= |c| + 1.257811
ERF_GATE_OFFSET = 1.257811


def _broadcast_parts(node, ctx, inputs):
    out = node.outputs[0]
    return [ctx.scale(ctx.lip(x), ctx.broadcast_factor(x, out, node)) for x in inputs if x]


@rule("Add", "Sum", "Sub", inputs={"A": DATA, "B": DATA, "data_0": DATA}, attrs=LEGACY_BROADCAST, kind="linear",
      constant="sum of the inputs' constants; a broadcast input counts sqrt(copies); constants only shift")
def add(node, ctx):
    return [ctx.add(_broadcast_parts(node, ctx, node.inputs))]


@rule("Mean", inputs={"data_0": DATA}, attrs=("consumed_inputs",), kind="linear",
      constant="sum of the inputs' constants (broadcast copies counted) divided by the number of inputs")
def mean(node, ctx):
    k = sum(1 for x in node.inputs if x)
    ctx.note_factor(node, 1.0 / k, f"mean of {k} inputs")
    return [ctx.scale(ctx.add(_broadcast_parts(node, ctx, node.inputs)), 1.0 / k)]


@rule("Max", "Min", inputs={"data_0": DATA}, attrs=("consumed_inputs",), kind="nonlinear",
      constant="root-sum-square of the inputs' constants (|max(a,b) - max(a',b')| <= max(|da|, |db|))")
def max_min(node, ctx):
    return [ctx.rss(_broadcast_parts(node, ctx, node.inputs))]


@rule("Where", inputs={"condition": CONST, "X": DATA, "Y": DATA}, kind="nonlinear",
      constant="root-sum-square of X's and Y's constants; the condition must be a constant")
def where(node, ctx):
    return [ctx.rss(_broadcast_parts(node, ctx, node.inputs[1:]))]


@rule("Mul", inputs={"A": DATA, "B": DATA}, attrs=LEGACY_BROADCAST, kind="nonlinear",
      constant="max|c| x sqrt(copies) for a constant c; x*g(x) gates (SiLU, HardSwish, erf-GELU) by their exact "
               "slope bound computed from the matched constants; any other product of input-dependent tensors refused")
def mul(node, ctx):
    a, b = node.inputs[:2]
    out = node.outputs[0]
    if ctx.depends(a) and ctx.depends(b):
        pattern = _gate_pattern(ctx, a, b) or _gate_pattern(ctx, b, a)
        if pattern is None:
            from lipaudit.ops.products import product

            return [product(node, ctx, a, b)]  # on --input-range only (refused without it)
        x, factor, name = pattern
        ctx.note_factor(node, factor, name)
        return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, out, node))]
    x, c = (a, ctx.const(b)) if ctx.depends(a) else (b, ctx.const(a))
    factor = _max_abs(c)
    ctx.note_factor(node, factor, "multiplication by a constant")
    return [ctx.scale(ctx.lip(x), factor * ctx.broadcast_factor(x, out, node))]


@rule("Div", inputs={"A": DATA, "B": DATA}, attrs=LEGACY_BROADCAST, kind="linear",
      constant="max|1/c| x sqrt(copies) for a constant divisor c without zeros; an input-dependent divisor bounded "
               "away from 0 on --input-range: sup|1/b| L_a + sup|a|/min|b|^2 L_b (refused without a domain)")
def div(node, ctx):
    a, b = node.inputs[:2]
    if ctx.depends(b):
        from lipaudit.ops.products import quotient

        return [quotient(node, ctx, a, b)]
    c = np.asarray(ctx.const(b), dtype=np.float64)
    if c.size and np.any(c == 0):
        ctx.fail(node, "division by a constant that contains zero")
    factor = _max_abs(1.0 / c) if c.size else 0.0
    ctx.note_factor(node, factor, "division by a constant")
    return [ctx.scale(ctx.lip(a), factor * ctx.broadcast_factor(a, node.outputs[0], node))]


def _max_abs(c) -> float:
    c = np.asarray(c, dtype=np.float64)
    if not c.size:
        return 0.0
    return float(np.max(np.abs(c))) if np.all(np.isfinite(c)) else math.inf


def _gate_pattern(ctx, x: str, gate: str):
    """``x * s * g(k x)`` with a known gate ``g``. Returns ``(x, slope bound, name)`` or None.

    The bound is computed from the matched constants ``s``, ``k`` (and the gate's
    own attributes), never assumed from the usual values:
    - sigmoid: x*sigmoid(kx) has slope sigma(t) + t sigma'(t), t = kx, in [-0.0998, 1.0998] for every k;
    - HardSigmoid(alpha, beta): x*clip(a x + beta, 0, 1) has slopes in hull{0, 1, -beta, 2 - beta};
    - x*(c + erf(kx)): see ERF_GATE_OFFSET.
    """
    producers = ctx.producers()
    scale, gate = _strip_constant_scale(ctx, producers, gate)
    node = producers.get(gate)
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op == "Sigmoid" and _strip_constant_scale(ctx, producers, node.inputs[0])[1] == x:
        return x, scale * SILU_SLOPE, "x * sigmoid(k x) (SiLU family)"
    if node.op == "HardSigmoid" and not node.attrs.keys() - {"alpha", "beta"}:
        if _strip_constant_scale(ctx, producers, node.inputs[0])[1] == x:
            beta = float(node.attrs.get("beta", 0.5))
            return x, scale * max(1.0, abs(beta), abs(2.0 - beta)), "x * hardsigmoid(k x) (HardSwish family)"
    if node.op == "Add":
        consts = [ctx.const(i) for i in node.inputs if ctx.const(i) is not None]
        rest = [i for i in node.inputs if ctx.const(i) is None]
        if len(consts) == 1 and len(rest) == 1 and consts[0].size == 1 and np.isfinite(consts[0]).all():
            erf = producers.get(rest[0])
            if erf is not None and erf.op == "Erf" and erf.domain in ("", "ai.onnx") and _strip_constant_scale(ctx, producers, erf.inputs[0])[1] == x:
                c = abs(float(np.asarray(consts[0]).reshape(())))
                return x, scale * (c + ERF_GATE_OFFSET), "x * (c + erf(k x)) (GELU family)"
    return None


def _strip_constant_scale(ctx, producers, name: str) -> tuple[float, str]:
    """Follow Mul/Div by finite scalar constants upstream; returns (|total scale|, source value)."""
    scale = 1.0
    while True:
        node = producers.get(name)
        if node is None or node.op not in ("Mul", "Div") or node.domain not in ("", "ai.onnx"):
            return scale, name
        a, b = node.inputs[:2]
        ca, cb = ctx.const(a), ctx.const(b)
        if node.op == "Mul" and ca is not None and ca.size == 1 and np.isfinite(ca).all():
            scale, name = scale * abs(float(np.asarray(ca).reshape(()))), b
        elif cb is not None and cb.size == 1 and np.isfinite(cb).all() and float(np.asarray(cb).reshape(())) != 0:
            v = float(np.asarray(cb).reshape(()))
            scale, name = scale * (abs(v) if node.op == "Mul" else 1 / abs(v)), a
        else:
            return scale, name
